#!/bin/sh
# device_debs.sh [DIR] — downloads (Debian 12, apt-get download: no install, no root needed) the .deb
# files that scripts/device_build.sh extracts into a private prefix on a host that has a compiler
# and CMake but none of qvlm's libraries (the lent AMX Xeon of the device tool). DIR defaults to
# .carry/debs (git-ignored; carry it with the run). About 20 MB.
#
# What and why: runtime + -dev of each library the build links (oneDNN 2.6 for its v2 C API,
# json-c, libyaml, libjpeg-turbo 62, libpng + zlib headers, PCRE2, utf8proc, Criterion); the
# OpenCL ICD loader and headers, because Debian's oneDNN is built with the OpenCL GPU runtime
# (libdnnl.so.2 needs libOpenCL.so.1 and its CMake config calls find_package(OpenCL)); the
# libraries behind libcriterion.so.3 that a non-Debian host may lack or carry under other
# sonames (libgit2 1.5 and what it links: nanomsg, http-parser, mbedTLS, libssh2, Kerberos,
# libffi); and pkgconf, for hosts without pkg-config. libc, libstdc++, libgomp and OpenSSL are the
# host's.
set -eu
cd "$(dirname "$0")/.."
DIR=${1:-.carry/debs}
PKGS="libdnnl2 libdnnl-dev libjson-c5 libjson-c-dev libyaml-0-2 libyaml-dev libjpeg62-turbo libjpeg62-turbo-dev
libpng16-16 libpng-dev zlib1g-dev libpcre2-8-0 libpcre2-dev libutf8proc2 libutf8proc-dev libcriterion3
libcriterion-dev libgit2-1.5 libnanomsg5 libhttp-parser2.9 libmbedtls14 libmbedx509-1 libmbedcrypto7 libssh2-1
libffi8 libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1 ocl-icd-libopencl1
ocl-icd-opencl-dev opencl-c-headers pkgconf pkgconf-bin libpkgconf3"
# Open MPI 4.1 for the `mpi` stage (-DQVLM_MPI=ON; relocated with OPAL_PREFIX): the runtime, its
# launcher and headers, and the libraries behind them that a non-Debian host may lack (about 7 MB)
MPI_PKGS="libopenmpi3 libopenmpi-dev openmpi-bin openmpi-common libevent-core-2.1-7 libevent-pthreads-2.1-7
libfabric1 libhwloc15 libibverbs1 libmunge2 libnl-3-200 libnl-route-3-200 libnuma1 libpciaccess0 libpmix2
libpsm-infinipath1 libpsm2-2 librdmacm1 libucx0 libxnvctrl0"
PKGS="$PKGS $MPI_PKGS"
[ "${1:-}" = "--list" ] && { echo $PKGS; exit 0; }
mkdir -p "$DIR"
cd "$DIR"
# shellcheck disable=SC2086
apt-get download $PKGS
ls -1 | wc -l | xargs echo "debs in $DIR:"
du -sh . | cut -f1 | xargs echo "size:"
