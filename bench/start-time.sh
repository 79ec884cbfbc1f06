#!/usr/bin/env bash
# How long does it take to start a container, run `true`, and collect its exit status?
# carton side by side with plain chroot, runc, crun, carton-oci and chapter 7's runtime on one bundle, on the same busybox root
# filesystem, in one hyperfine run. Also reports carton's peak memory (max RSS).
#
#   sudo bench/start-time.sh            (needs: hyperfine; optional: runc, crun)
#   sudo BEFORE=/path/to/an/older/carton bench/start-time.sh    (both builds in one run)
#
# carton runs with `--network none` (a network namespace with only lo, as `runc spec`
# makes): the default bridge would change the host's network, and costs more (chapter 3
# measures it). runc, crun and carton-oci run one bundle made by `runc spec`, and do the same
# work on it (capabilities dropped, /proc paths masked, the seccomp filter and device rules of
# the spec); chapter 7's step07-runtime applies none of the security fields. carton's own run
# applies Docker's defaults (chapter 8); the --privileged row shows what they cost.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null || { echo "install hyperfine: apt-get install -y hyperfine" >&2; exit 1; }

cargo build --release --quiet --workspace
bin=$PWD/target/release
work=$(mktemp -d /tmp/carton-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

"$bin/carton" bootstrap busybox "$work/rootfs" >/dev/null
"$bin/carton" --root "$work/state" bootstrap busybox >/dev/null
# The floor: util-linux creating the same namespaces and chrooting, no mounts at all.
commands=(
  "$bin/step01-chroot chroot $work/rootfs /bin/true"
  "unshare --fork --pid --mount --uts --ipc --net chroot $work/rootfs /bin/true"
  "$bin/carton --root $work/state run --rm --network none busybox true"
  "$bin/carton --root $work/state run --rm --network none --privileged busybox true"
  "$bin/carton --root $work/state run --rm --network none --rootfs $work/rootfs -- /bin/true"
  "$bin/carton --root $work/state run --rm --network none --init --rootfs $work/rootfs -- /bin/true"
)
names=("plain chroot (step01-chroot chroot)" "unshare --pid --mount --uts --ipc --net + chroot" "carton run --rm --network none busybox true" "carton run ... --privileged (no security defaults)" "carton run --rm --network none --rootfs" "carton run --rm --network none --init --rootfs")
# To compare with another build of carton in the same run: BEFORE=/path/to/old/carton.
if [ -n "${BEFORE:-}" ]; then
  "$BEFORE" --root "$work/before" bootstrap busybox >/dev/null
  commands+=("$BEFORE --root $work/before run --rm --network none busybox true" "$BEFORE --root $work/before run --rm --network none --rootfs $work/rootfs -- /bin/true")
  names+=("BEFORE: carton run --rm --network none busybox true" "BEFORE: carton run --rm --network none --rootfs")
fi

# One bundle, made by `runc spec`, run by runc, crun and carton's runtime (chapter 7).
# On a hybrid cgroup host crun refuses the cgroup2 mount beside v1: it runs in a mount
# namespace of its own with /sys/fs/cgroup/unified unmounted (the unshare costs a little).
crun_prefix=""
grep -q " /sys/fs/cgroup/unified " /proc/self/mountinfo && crun_prefix=hybrid
for runtime in carton-oci step07-runtime runc crun; do
  case $runtime in
    carton-oci | step07-runtime) runtime_bin=$bin/$runtime ;;
    *) runtime_bin=$(command -v "$runtime" || true) ;;
  esac
  [ -n "$runtime_bin" ] || continue
  bundle=$work/bundle-$runtime
  mkdir -p "$bundle"
  command -v runc >/dev/null || { echo "note: runc spec makes the bundles; install runc" >&2; break; }
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
  line="$runtime_bin --root $work/state-$runtime run --bundle $bundle bench-$runtime-$$"
  [ "$runtime" = crun ] && [ -n "$crun_prefix" ] && line="unshare --mount --propagation private $work/crun-hybrid $line"
  if [ "$runtime" = crun ] && [ -n "$crun_prefix" ]; then
    printf '#!/bin/sh\numount /sys/fs/cgroup/unified\nexec "$@"\n' > "$work/crun-hybrid"; chmod +x "$work/crun-hybrid"
  fi
  if $line >/dev/null 2>&1; then
    commands+=("$line")
    names+=("$runtime run (a runc spec bundle)")
  else
    echo "note: $runtime cannot run here ($($line 2>&1 | tail -1)); skipped" >&2
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
for _ in $(seq 20); do /usr/bin/time -f "%M" "$bin/carton" run --rm --network none --rootfs "$work/rootfs" -- /bin/true 2>&1 >/dev/null; done | sort -n | awk '{a[NR]=$1} END {print "  min " a[1] "  median " a[int((NR+1)/2)] "  max " a[NR]}'
