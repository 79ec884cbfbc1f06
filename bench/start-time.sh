#!/usr/bin/env bash
# How long does it take to start a container, run `true`, and collect its exit status?
# carton side by side with plain chroot, runc and crun, on the same busybox root
# filesystem, in one hyperfine run. Also reports carton's peak memory (max RSS).
#
#   sudo bench/start-time.sh            (needs: hyperfine; optional: runc, crun)
#
# carton runs with `--network none` (a network namespace with only lo, as `runc spec`
# makes): the default bridge would change the host's network, and costs more (chapter 3
# measures it). runc and crun run a bundle made by `runc spec`: they also drop
# capabilities and mask /proc paths, which carton does not do yet, so they do more work.
# The numbers say what each costs today, not who is "faster" at equal work.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null || { echo "install hyperfine: apt-get install -y hyperfine" >&2; exit 1; }

cargo build --release --quiet --workspace
bin=$PWD/target/release
work=$(mktemp -d /tmp/carton-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

"$bin/carton" bootstrap busybox "$work/rootfs" >/dev/null
# The floor: util-linux creating the same namespaces and chrooting, no mounts at all.
commands=(
  "$bin/step01-chroot chroot $work/rootfs /bin/true"
  "unshare --fork --pid --mount --uts --ipc --net chroot $work/rootfs /bin/true"
  "$bin/carton run --network none --rootfs $work/rootfs -- /bin/true"
  "$bin/carton run --network none --init --rootfs $work/rootfs -- /bin/true"
)
names=("plain chroot (step01-chroot chroot)" "unshare --pid --mount --uts --ipc --net + chroot" "carton run --network none" "carton run --network none --init")

for runtime in runc crun; do
  command -v "$runtime" >/dev/null || continue
  bundle=$work/bundle-$runtime
  mkdir -p "$bundle"
  (cd "$bundle" && runc spec)
  # No terminal, run /bin/true, writable root (carton's is writable too).
  python3 - "$bundle/config.json" "$work/rootfs" <<'PY'
import json, sys
path, rootfs = sys.argv[1], sys.argv[2]
spec = json.load(open(path))
spec["process"]["terminal"] = False
spec["process"]["args"] = ["/bin/true"]
spec["root"] = {"path": rootfs, "readonly": False}
json.dump(spec, open(path, "w"), indent=2)
PY
  if "$runtime" --root "$work/state-$runtime" run --bundle "$bundle" "bench-$runtime-$$" >/dev/null 2>&1; then
    commands+=("$runtime --root $work/state-$runtime run --bundle $bundle bench-$runtime-$$")
    names+=("$runtime run")
  else
    echo "note: $runtime cannot run here ($("$runtime" --root "$work/state-$runtime" run --bundle "$bundle" "bench-$runtime-$$" 2>&1 | tail -1)); skipped" >&2
  fi
done

args=()
for i in "${!commands[@]}"; do args+=(--command-name "${names[$i]}" "${commands[$i]}"); done
hyperfine --shell=none --warmup 10 --runs "${RUNS:-100}" --export-markdown "$work/results.md" --export-json "$work/results.json" "${args[@]}"
cat "$work/results.md"
echo
echo "medians (ms):"
python3 - "$work/results.json" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
floor = next((r["median"] for r in results if r["command"].startswith("unshare")), None)
for r in results:
    ratio = f"  ({r['median'] / floor:.2f}x the unshare floor)" if floor else ""
    print(f"  {r['median'] * 1000:6.2f}  {r['command']}{ratio}")
PY

echo
echo "carton run peak memory (max RSS of carton and its child, KiB, 20 runs):"
for _ in $(seq 20); do /usr/bin/time -f "%M" "$bin/carton" run --network none --rootfs "$work/rootfs" -- /bin/true 2>&1 >/dev/null; done | sort -n | awk '{a[NR]=$1} END {print "  min " a[1] "  median " a[int((NR+1)/2)] "  max " a[NR]}'
