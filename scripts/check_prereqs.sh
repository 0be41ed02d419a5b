#!/usr/bin/env bash
# What `make test` needs from the system, checked before it builds any venv: everything
# else (shellcheck, hadolint, checkov, vLLM, Playwright) is installed by the Makefile.
#
#   scripts/check_prereqs.sh        prints one line per missing thing, with how to install
#                                   it, and exits 1; prints nothing and exits 0 when all is there
#
# CHROMIUM (default /usr/bin/chromium) and HAPROXY (default: haproxy on PATH or in
# /usr/sbin, where Debian puts it) exist so the script's own tests can point them elsewhere:
# the browser tests always launch /usr/bin/chromium; the failover test runs haproxy.
set -euo pipefail

chromium="${CHROMIUM:-/usr/bin/chromium}"
haproxy="${HAPROXY:-$(command -v haproxy || echo /usr/sbin/haproxy)}"
# `kubectl kustomize` renders k8s/ (labels with includeTemplates, components): kustomize 5,
# which kubectl ships from 1.27 on. Debian's kubernetes-client is 1.20: too old.
kubectl_min_minor=27
kubectl_hint="install the Google Cloud CLI's kubectl (\`gcloud components install kubectl\`, or \`apt-get install -y kubectl\` from the Google Cloud CLI apt repository)"
missing=0

# One line on stderr: what is missing, what needs it, and how to install it.
report() {
  printf 'make test needs %s\n' "$*" >&2
  missing=1
}

if [[ ! -x "$chromium" ]]; then
  report "Chromium at $chromium (browser tests): apt-get install -y chromium"
fi

if [[ ! -x "$haproxy" ]]; then
  report "HAProxy at $haproxy (the failover test's sticky proxy): apt-get install -y haproxy"
fi

if ! command -v kubectl >/dev/null; then
  report "kubectl 1.$kubectl_min_minor or newer (renders k8s/): $kubectl_hint"
else
  version_json="$(kubectl version --client -o json 2>/dev/null || true)"
  minor=""
  if [[ "$version_json" =~ \"minor\":\ *\"([0-9]+) ]]; then
    minor="${BASH_REMATCH[1]}"
  fi
  if [[ -z "$minor" || "$minor" -lt "$kubectl_min_minor" ]]; then
    report "kubectl 1.$kubectl_min_minor or newer (renders k8s/), found ${minor:+1.}${minor:-an unknown version} at $(command -v kubectl): $kubectl_hint"
  fi
fi

exit "$missing"
