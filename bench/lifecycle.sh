#!/usr/bin/env bash
# Chapter 9's numbers: how long `carton run -d` takes to return, `carton ps` with 50
# containers, `carton exec ID true` into a running one, and how much memory each
# container's monitor holds of its own (USS, as smem counts it: its private pages; and PSS).
#
#   sudo bench/lifecycle.sh             (needs: hyperfine)
#
# Every container runs with `--network none` (no bridge on the host) in a throwaway state
# root, and is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null || { echo "install hyperfine: apt-get install -y hyperfine" >&2; exit 1; }

cargo build --release --quiet --bin carton
carton=$PWD/target/release/carton
work=$(mktemp -d /tmp/carton-lifecycle.XXXXXX)
export CARTON_ROOT=$work/state
cleanup() {
  "$carton" ps -aq --no-trunc 2>/dev/null | xargs -r "$carton" rm -f >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
"$carton" bootstrap busybox >/dev/null

# run -d returns once the container runs (its monitor says so); all are removed after.
remove_all() { "$carton" ps -aq --no-trunc | xargs -r "$carton" rm -f >/dev/null; }
hyperfine --shell=none --warmup 5 --runs "${RUNS:-50}" --export-json "$work/run-d.json" \
  --command-name "carton run -d --network none busybox sleep 600" \
  "$carton run -d --network none busybox sleep 600" >/dev/null
remove_all
hyperfine --shell=none --warmup 3 --runs "${RUNS:-50}" --export-json "$work/run-rm.json" \
  --command-name "carton run --rm --network none busybox true (attached, for comparison)" \
  "$carton run --rm --network none busybox true" >/dev/null

target=$("$carton" run -d --network none --name target busybox sleep 600)
for i in $(seq 49); do "$carton" run -d --network none busybox sleep 600 >/dev/null; done
hyperfine --shell=none --warmup 5 --runs "${RUNS:-50}" --export-json "$work/ps.json" \
  --command-name "carton ps (50 running)" "$carton ps" \
  --command-name "carton ps -a --format {{.Names}} (50)" "$carton ps -a --format {{.Names}}" \
  --command-name "carton exec target true" "$carton exec target true" >/dev/null

python3 - "$work/run-d.json" "$work/run-rm.json" "$work/ps.json" <<'PY'
import json, sys
print("medians (ms):")
for path in sys.argv[1:]:
    for r in json.load(open(path))["results"]:
        print(f"  {r['median'] * 1000:7.2f}  ±{r['stddev'] * 1000:5.2f}  {r['command']}")
PY

echo
echo "the monitors' memory (KiB; 50 monitors, each its own process):"
python3 - "$CARTON_ROOT" <<'PY'
import json, os, sys
root = sys.argv[1]
uss, pss, rss = [], [], []
for cid in os.listdir(os.path.join(root, "containers")):
    record = json.load(open(os.path.join(root, "containers", cid, "container.json")))
    monitor = (record["State"].get("Monitor") or "").split(":")[0]
    if not monitor:
        continue
    fields = {}
    for line in open(f"/proc/{monitor}/smaps_rollup"):
        parts = line.split()
        if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
            fields[parts[0][:-1]] = int(parts[1])
    uss.append(fields["Private_Clean"] + fields["Private_Dirty"])
    pss.append(fields["Pss"])
    rss.append(fields["Rss"])
median = lambda values: sorted(values)[len(values) // 2]
print(f"  USS (private) median {median(uss)}  max {max(uss)}")
print(f"  PSS            median {median(pss)}")
print(f"  RSS            median {median(rss)}")
PY
