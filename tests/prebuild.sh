#!/usr/bin/env bash
# Builds what the chart and e2e tests need in the background while `make test` lints and
# unit-tests in the foreground, so that a cold machine compiles Go and Rust at once instead of
# one after the other. Each job is the same cached build its users call (a warm cache makes it a
# no-op), run in a process group of its own with its log kept:
#   controlplane   tests/controlplane/build.sh, then the real node's install and kubelet
#                  (tests/node: after the control plane, whose packages it reuses from Go's cache)
#   helpers        tests/go-helper.sh promtool, platform, registry, krew, kstatus,
#                  argocd-health, argo-rollouts (one after the other)
#   image          tests/image/build.sh for each platform of STO_IMAGE_PLATFORMS (default
#                  linux/amd64, as tests/run-e2e.sh): the static release builds and the images
# The helpers and the image run at a lower CPU priority (nice), so the control plane, which the
# chart tests wait for first, and the foreground cargo come first. Go's compiler runs with
# GOGC=400 (unless GOGC is set): less time collecting garbage for some more memory (a cold build
# of tests/kstatus: 74 s of CPU instead of 88); GOGC is not part of Go's build-cache keys, so the
# cached packages are the same.
#   tests/prebuild.sh start           start every job (logs in STO_PREBUILD_DIR, default
#                                     target/prebuild/: JOB.log, JOB.done holds "exit seconds
#                                     user-CPU system-CPU")
#   tests/prebuild.sh wait [JOB...]   wait for those jobs (default: all); a failed job prints its
#                                     log's tail and makes wait fail. A job never started is not
#                                     waited for (its users build on demand).
#   tests/prebuild.sh stop            end the jobs still running (their process groups)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${STO_PREBUILD_DIR:-$root/target/prebuild}
export GOGC=${GOGC:-400}
jobs=(controlplane helpers image)
log() { printf '[prebuild] %s\n' "$*" >&2; }

job_command() {
  case "$1" in
    controlplane)
      echo 'tests/controlplane/build.sh && tests/node/install.sh && tests/node/build.sh' ;;
    helpers)
      echo 'for helper in promtool platform registry krew kstatus argocd-health argo-rollouts; do
              tests/go-helper.sh "$helper" || exit; done' ;;
    image)
      # shellcheck disable=SC2016 # expanded by the job's shell
      echo 'for platform in ${STO_IMAGE_PLATFORMS:-linux/amd64}; do
              STO_IMAGE_ARCH=${platform#linux/} tests/image/build.sh || exit; done' ;;
  esac
}

case "${1:-}" in
  start)
    mkdir -p "$dir"
    for job in "${jobs[@]}"; do
      rm -f "$dir/$job.done" "$dir/$job.pid"
      priority=10
      [ "$job" = controlplane ] && priority=0
      # setsid: a process group of its own, which stop ends whole.
      (cd "$root" && setsid nice -n "$priority" bash -c '
        start=$(date +%s)
        bash -c "$1"
        status=$?
        # The CPU the job used (its children: user and system), which a busy machine does not
        # inflate as it does the wall-clock time.
        times >"$2.times"
        echo "$status $(( $(date +%s) - start )) $(tail -n1 "$2.times")" >"$2.done"' prebuild "$(job_command "$job")" "$dir/$job" \
        >"$dir/$job.log" 2>&1 </dev/null &
       echo $! >"$dir/$job.pid")
    done
    log "started ${jobs[*]} in the background (logs in $dir)"
    ;;
  wait)
    shift
    [ $# -gt 0 ] || set -- "${jobs[@]}"
    failed=0
    for job in "$@"; do
      [ -f "$dir/$job.pid" ] || continue
      waited=0
      while [ ! -f "$dir/$job.done" ]; do
        if ! kill -0 "$(cat "$dir/$job.pid")" 2>/dev/null && [ ! -f "$dir/$job.done" ]; then
          sleep 1
          [ -f "$dir/$job.done" ] || { echo "1 0" >"$dir/$job.done"; echo "(the job ended without a status)" >>"$dir/$job.log"; }
          break
        fi
        [ $((waited % 60)) -eq 0 ] && [ "$waited" -gt 0 ] && log "still waiting for $job ($waited s; tail -f $dir/$job.log)"
        sleep 1
        waited=$((waited + 1))
      done
      read -r status seconds user system <"$dir/$job.done"
      if [ "$status" = 0 ]; then
        log "$job ready (built in ${seconds}s, CPU ${user:-?} user ${system:-?} system; waited ${waited}s)"
      else
        log "$job FAILED (exit $status after ${seconds}s); the end of $dir/$job.log:"
        tail -n 40 "$dir/$job.log" | sed "s/^/[prebuild:$job] /" >&2
        failed=1
      fi
    done
    exit $failed
    ;;
  stop)
    for job in "${jobs[@]}"; do
      [ -f "$dir/$job.pid" ] && [ ! -f "$dir/$job.done" ] || continue
      kill -TERM -- "-$(cat "$dir/$job.pid")" 2>/dev/null && log "stopped $job" || true
    done
    ;;
  *)
    echo "usage: tests/prebuild.sh start | wait [JOB...] | stop" >&2
    exit 2
    ;;
esac
