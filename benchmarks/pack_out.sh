#!/usr/bin/env bash
# Packs a device call's output folder for the trip back (at most 8 files come back from $OUT):
# everything but videos and meshes goes into one suite.tgz, unpacked here with
# `tar xzf suite.tgz -C DIR`. Usage: bash benchmarks/pack_out.sh "$OUT"
set -eu
out=${1:?usage: pack_out.sh DIR}
cd "$out"
tar czf /tmp/suite.tgz --exclude='video.*' --exclude='*.ply' .
find . -mindepth 1 -type f ! -name 'video.*' ! -name '*.ply' -delete
find . -mindepth 1 -type d -empty -delete
mv /tmp/suite.tgz suite.tgz
ls -la
