#!/usr/bin/env bash
# System packages the engines need on Debian/Ubuntu: ffmpeg (audio containers), espeak-ng
# (phonemizer for TTS, and the tests' speech source), sox, libsndfile. Installs only what is
# missing; uses sudo when not root.
set -euo pipefail
need=()
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v sox >/dev/null || need+=(sox)
ldconfig -p 2>/dev/null | grep -q libsndfile || need+=(libsndfile1)
if [ ${#need[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing system packages: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
