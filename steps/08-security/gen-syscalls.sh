#!/usr/bin/env bash
# Regenerate src/seccomp/syscalls.rs: the system call numbers of x86_64 and aarch64, by
# name, from the kernel's UAPI headers (Debian: linux-libc-dev). A seccomp filter compares
# numbers; profiles name calls, so the compiler needs this table (sorted by name: it is
# searched on every start). Run from this directory.
set -euo pipefail
x86=/usr/include/x86_64-linux-gnu/asm/unistd_64.h
generic=/usr/include/asm-generic/unistd.h
table() { # NAME, then "name number" lines on stdin; sorted by name (bytes), for binary search
  echo "pub const $1: &[(&str, u32)] = &["
  LC_ALL=C sort -u -k1,1 | awk '{printf "    (\"%s\", %s),\n", $1, $2}'
  echo "];"
}
{
  echo "//! System call numbers by name, made by gen-syscalls.sh from the kernel's UAPI headers"
  echo "//! ($(dpkg-query -W -f='linux-libc-dev ${Version}' linux-libc-dev 2>/dev/null || echo linux-libc-dev)). Do not edit."
  echo
  awk '$1 == "#define" && $2 ~ /^__NR_/ && $3 ~ /^[0-9]+$/ {sub(/^__NR_/, "", $2); print $2, $3}' "$x86" | table X86_64
  echo
  # aarch64 uses the generic table, with the options its own asm/unistd.h switches on.
  printf '#include <asm-generic/unistd.h>\n' |
    cpp -P -dM -D__BITS_PER_LONG=64 -D__ARCH_WANT_RENAMEAT -D__ARCH_WANT_NEW_STAT -D__ARCH_WANT_SET_GET_RLIMIT \
      -D__ARCH_WANT_TIME32_SYSCALLS -D__ARCH_WANT_SYS_CLONE3 -D__ARCH_WANT_MEMFD_SECRET -I/usr/include - |
    awk '$1 == "#define" && $2 ~ /^__NR(3264)?_/ {print $2, $3}' |
    awk '{n[$1]=$2} END {for (k in n) {v=n[k]; while (v in n) v=n[v]; if (v ~ /^[0-9]+$/ && k !~ /^__NR3264_/ && k != "__NR_syscalls") {sub(/^__NR_/, "", k); print k, v}}}' |
    table AARCH64
} > src/seccomp/syscalls.rs
