#!/usr/bin/env bash
# Chapter 11's numbers: how long a build context of 10,000 files takes to hash and copy
# (`COPY . /ctx`, a cold build and its memory), and a fully cached rebuild of a 10-step
# Dockerfile: carton beside `podman build` (buildah) when podman is installed.
#
#   sudo bench/build.sh            (needs: hyperfine; optional: podman)
#
# RUN steps get no network (--network none); everything lives in throwaway directories.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null || { echo "install hyperfine: apt-get install -y hyperfine" >&2; exit 1; }
cargo build --release --quiet --bin carton
carton=$PWD/target/release/carton
work=$(mktemp -d /tmp/carton-build-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
export CARTON_ROOT=$work/state
"$carton" bootstrap busybox >/dev/null

# A context of 10,000 small files in 100 directories.
mkdir -p "$work/big"
for d in $(seq 1 100); do
  mkdir "$work/big/d$d"
  for f in $(seq 1 100); do echo "file $d/$f" > "$work/big/d$d/f$f.txt"; done
done
printf 'FROM busybox\nCOPY . /ctx\n' > "$work/big/Dockerfile"
echo "== a context of 10,000 files: COPY . /ctx, no cache (wall time, peak memory)"
/usr/bin/time -f "   %e s, max RSS %M KiB" "$carton" build -q --no-cache --network none -t big "$work/big" >/dev/null

# A 10-step Dockerfile, built once, then rebuilt from the cache.
mkdir -p "$work/app"
echo 'echo hello' > "$work/app/app.sh"
cat > "$work/app/Dockerfile" <<'DOCKERFILE'
FROM busybox
ENV APP=/app
WORKDIR /app
COPY app.sh .
RUN chmod +x app.sh
RUN echo built > /app/built
LABEL lab=bench
EXPOSE 8080
USER 1000
CMD ["sh", "/app/app.sh"]
DOCKERFILE
"$carton" build -q --network none -t app "$work/app" >/dev/null
commands=("$carton build -q --network none -t app $work/app")
names=("carton build (all 10 steps from the cache)")
if command -v podman >/dev/null; then
  # podman in throwaway storage, with this machine's limits (see chapter 7's notes).
  mkdir -p "$work/podman"
  printf '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n[engine]\ncgroup_manager = "cgroupfs"\nruntime = "runc"\n' > "$work/podman/containers.conf"
  podman_cmd="env CONTAINERS_CONF=$work/podman/containers.conf podman --root $work/podman/root --runroot $work/podman/run --storage-driver vfs"
  if "$carton" save busybox | $podman_cmd load >/dev/null 2>&1 && $podman_cmd build -q --network none -t app "$work/app" >/dev/null 2>&1; then
    commands+=("$podman_cmd build -q --network none -t app $work/app")
    names+=("podman build (all 10 steps from its cache)")
  else
    echo "note: podman could not build here; only carton is timed" >&2
  fi
fi
args=()
for i in "${!commands[@]}"; do args+=(--command-name "${names[$i]}" "${commands[$i]}"); done
hyperfine --shell=none --warmup 2 --runs "${RUNS:-20}" "${args[@]}"
