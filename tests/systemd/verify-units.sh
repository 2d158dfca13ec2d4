#!/usr/bin/env bash
# Checks the shipped systemd files without a running systemd (no PID 1 needed):
#  1. systemd-analyze verify finds nothing to say about any unit (an unknown
#     key, a bad value, an ExecStart= that is not executable: verify only warns
#     and exits 0 for most of these, so any line about our units fails here).
#     The units are copied to a temporary folder with /usr/bin/ebats-* pointed
#     at the build's binaries; the templates are checked as instance "demo".
#  2. The exposure systemd-analyze security --offline=true gives each unit is
#     not above the "after" column of the table in docs/OPERATIONS.md
#     ("Hardening"), so the documented numbers stay true.
#  3. systemd-sysusers and systemd-tmpfiles accept ebats.sysusers.conf and
#     ebats.tmpfiles.conf in a temporary --root and make what the units need.
#
#   tests/systemd/verify-units.sh --source DIR --build DIR
set -euo pipefail

source_dir=$(cd "$(dirname "$0")/../.." && pwd)
build_dir=$source_dir/build
while [ $# -gt 0 ]; do
  case "$1" in
    --source) source_dir=$2; shift 2 ;;
    --build) build_dir=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "verify-units: unknown option '$1'" >&2; exit 2 ;;
  esac
done
source_dir=$(cd "$source_dir" && pwd)
build_dir=$(cd "$build_dir" && pwd)  # the units need absolute paths

units=(ebats-scheduler.service ebats-ntask-worker@.service ebats-dtask-worker@.service ebats.target)
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

tmp=$(mktemp -d /tmp/ebats-verify-units.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/units"
for u in "${units[@]}"; do
  sed "s#/usr/bin/ebats-#$build_dir/bin/ebats-#g" "$source_dir/systemd/$u" > "$tmp/units/$u"
done
for b in ebats-scheduler ebats-ntask-worker ebats-dtask-worker; do
  [ -x "$build_dir/bin/$b" ] || fail "$build_dir/bin/$b is not built (verify checks every ExecStart= command)"
done

# No PID 1 systemd here: everything runs offline and logs only what matters.
export SYSTEMD_LOG_LEVEL=notice SYSTEMD_PAGER=cat SYSTEMD_COLORS=0

# 1. verify
for u in ebats-scheduler.service ebats-ntask-worker@demo.service ebats-dtask-worker@demo.service ebats.target; do
  rc=0
  out=$(cd "$tmp/units" && systemd-analyze verify --man=no --generators=no "./$u" 2>&1) || rc=$?
  about_ours=$(printf '%s\n' "$out" | grep -E "ebats|$tmp" || true)
  if [ "$rc" -ne 0 ] || [ -n "$about_ours" ]; then
    fail "systemd-analyze verify $u (exit $rc):"
    printf '%s\n' "$out" | sed 's/^/    /' >&2
  else
    echo "ok: systemd-analyze verify $u"
    [ -z "$out" ] || printf '%s\n' "$out" | sed 's/^/    (not about ebats) /'
  fi
done

# 2. exposure against the table in docs/OPERATIONS.md:
#    | `ebats-scheduler.service` | 3.7 | 1.5 | OK |
doc=$source_dir/docs/OPERATIONS.md
for u in ebats-scheduler.service ebats-ntask-worker@.service ebats-dtask-worker@.service; do
  documented=$(awk -F'|' -v unit="\`$u\`" '{ gsub(/ /, "", $2) } $2 == unit { gsub(/ /, "", $4); print $4; exit }' "$doc")
  if [ -z "$documented" ]; then
    fail "docs/OPERATIONS.md has no row for \`$u\` in its exposure table"
    continue
  fi
  rc=0
  out=$(systemd-analyze security --offline=true --no-pager "$tmp/units/$u" 2>&1) || rc=$?
  measured=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
  if [ -z "$measured" ]; then
    fail "systemd-analyze security --offline=true $u gave no exposure (exit $rc):"
    printf '%s\n' "$out" | sed 's/^/    /' >&2
  elif awk -v m="$measured" -v d="$documented" 'BEGIN { exit !(m + 0 > d + 0) }'; then
    fail "$u: exposure $measured is above the $documented docs/OPERATIONS.md documents (lower it again, or measure and document the new value)"
  else
    echo "ok: $u exposure $measured (documented: $documented)"
  fi
done

# 3. sysusers and tmpfiles in a scratch root
mkdir -p "$tmp/root/etc"
if ! out=$(systemd-sysusers --root="$tmp/root" "$source_dir/systemd/ebats.sysusers.conf" 2>&1); then
  fail "systemd-sysusers ebats.sysusers.conf:"; printf '%s\n' "$out" | sed 's/^/    /' >&2
elif ! uid=$(awk -F: '$1 == "ebats" { print $3 }' "$tmp/root/etc/passwd") || [ -z "$uid" ]; then
  fail "systemd-sysusers made no ebats user"
else
  echo "ok: systemd-sysusers ebats.sysusers.conf (user ebats, uid $uid in the scratch root)"
  if ! out=$(systemd-tmpfiles --root="$tmp/root" --create "$source_dir/systemd/ebats.tmpfiles.conf" 2>&1); then
    fail "systemd-tmpfiles --create ebats.tmpfiles.conf:"; printf '%s\n' "$out" | sed 's/^/    /' >&2
  else
    before=$failures
    for want in "var/lib/ebats 770 $uid" "var/log/ebats 770 $uid" "usr/lib/ebats/plugins 755 0"; do
      set -- $want
      got=$(stat -c '%a %u' "$tmp/root/$1" 2>/dev/null || echo missing)
      if [ "$got" != "$2 $3" ]; then fail "systemd-tmpfiles: /$1 is '$got', want mode $2 owner $3"; fi
    done
    [ "$failures" -ne "$before" ] || echo "ok: systemd-tmpfiles --create ebats.tmpfiles.conf"
  fi
fi

if [ "$failures" -ne 0 ]; then
  echo "verify-units: $failures failure(s)" >&2
  exit 1
fi
echo "verify-units: all checks passed"
