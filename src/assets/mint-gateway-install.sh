#!/bin/sh
# shellcheck shell=dash
#
# mint-gateway-install.sh: `mint-gateway install` for an external computer without Node (CentOS 7,
# most HPC login nodes): POSIX sh, coreutils, awk and ssh-keygen, which any host running sshd has.
# It writes the same authorized_keys line as the Node installer (src/site/install.ts), with the same
# options, checks and idempotence: the line is found again by its key and replaced in place, never
# duplicated, and authorized_keys is replaced whole (never half-written). Copy it to the site
# together with mint-gateway.sh (which it installs from beside itself), then, as the MInt account:
#
#   sh mint-gateway-install.sh --key ~/mint.pub [--root DIR] [--program PATH] [--gateway-path PATH]
#     [--dest FILE] [--key-name NAME] [--export GLOBS] [--max-jobs N] [--min-free-mb N]
#     [--max-age-days N] [--grace SECONDS] [--min-free-inodes N] [--max-job-mb N] [--max-job-files N]
#     [--client-timeout SECONDS] [--env NAME=VALUE]... [--program NAME=PATH]... [--allow-env NAMES]
#     [--rsync PATH] [--allow-unconfined-rsync]
#     [--scheduler slurm|sge|pbs|none] [--scheduler-args 'OPTIONS'] [--scheduler-bin DIR] [--max-cpus N] [--max-memory-mb N]
#     [--max-walltime-min N]
#     [--from PATTERNS] [--expiry-time TIME] [--cert-authority [--principals NAMES]] [--enforce-job-scope] [--hash-uploads]
#     [--print]
#
#   sh mint-gateway-install.sh doctor [--root DIR] [--program PATH] [--gateway-path PATH] [--dest FILE]
#   sh mint-gateway-install.sh verify-audit [--root DIR] [--head HASH]...
#
# doctor makes `mint-gateway doctor`'s checks, with the same names and verdicts: ok, warn, FAIL, or
# SKIPPED (what it could not check here, with why and how to check it) and exits 1 on a FAIL.
# verify-audit is `mint-gateway verify-audit`: the same lines for each break of the audit log's hash
# chain, and the same exit status (1 on a break or a --head that is not in the log).
#
# Exit status: 0 done, 2 usage, 1 anything refused (one line on stderr saying why).

set -u
PATH=/usr/bin:/bin:/usr/sbin:/sbin
export PATH
LC_ALL=C
export LC_ALL
# Directories made here (mkdir -p) are 0700 at every level, as the Node installer makes them.
umask 077
NL='
'

main() {
  if [ "${1:-}" = doctor ]; then
    shift
    doctor "$@"
  fi
  if [ "${1:-}" = verify-audit ]; then
    shift
    verify_audit "$@"
  fi
  parse_options "$@"
  read_key
  gateway_command
  key_options
  line="$opts $key_type $key_b64 mint-gateway:$key_fp"
  if [ -n "$print" ]; then
    printf '%s\n' "$line"
    exit 0
  fi
  check_root_place
  install_script
  { mkdir -p -- "$root" && chmod 700 -- "$root"; } || fail "cannot create the job root $root"
  write_line
  printf '%s the mint-gateway line in %s\ngateway: %s\n%s\n' "$action" "$dest" "$gateway_path" "$line"
}

fail() {
  printf 'mint-gateway-install: %s\n' "$*" >&2
  exit 1
}

usage() {
  printf 'mint-gateway-install: %s\nusage: sh mint-gateway-install.sh --key FILE [options] (see the header of this file)\n' "$*" >&2
  exit 2
}

parse_options() {
  home=${HOME:-}
  [ -n "$home" ] || fail "HOME is not set"
  key=''
  root=$home/mint-jobs
  program=$home/misrc_remote_workflow/scripts/execute_remote-side_program_ssh.sh
  gateway_path=$home/.mint/mint-gateway.sh
  dest=$home/.ssh/authorized_keys
  print='' from='' expiry='' cert='' principals=''
  while [ $# -gt 0 ]; do
    case $1 in
      --print) print=1; shift; continue ;;
      --cert-authority) cert=1; shift; continue ;;
      --enforce-job-scope) enforce_scope=1; shift; continue ;;
      --hash-uploads) hash_uploads=1; shift; continue ;;
      # Obsolete (downloads are confined on any rsync >= 3.1.0): accepted, not written.
      --allow-unconfined-rsync) shift; continue ;;
      --*) [ $# -ge 2 ] || usage "$1 needs a value" ;;
      *) usage "unexpected argument '$1'" ;;
    esac
    case $1 in
      --key) key=$2 ;;
      --root) root=$2 ;;
      --program)
        case $2 in
          *=*)
            check "${2%%=*}" '^[A-Za-z0-9._-]{1,64}$' "--program NAME=PATH: NAME may hold only letters, digits and ._- (at most 64)"
            check "${2#*=}" '^/[A-Za-z0-9._/+-]*$' "--program $2 must be an absolute path of letters, digits and ._/+- only"
            named_programs="${named_programs:-} --program $2" ;;
          *)
            [ -z "${program_given:-}" ] || fail "--program PATH may be given once (add others as --program NAME=PATH)"
            program_given=1
            program=$2 ;;
        esac ;;
      --allow-env)
        check "$2" '^[A-Za-z_][A-Za-z0-9_]*(,[A-Za-z_][A-Za-z0-9_]*)*$' "--allow-env must be variable names (letters, digits and _), comma-separated"
        if printf '%s\n' "$2" | tr ',' '\n' | grep -Eq '^(LD_.*|BASH_ENV|ENV|BASH_FUNC_.*|IFS|SHELLOPTS|BASHOPTS|PS4|PATH|CDPATH|GCONV_PATH|LOCPATH|NLSPATH|HOSTALIASES|PYTHON.*|PERL5.*|PERLLIB|RUBYOPT|RUBYLIB|NODE_OPTIONS|NODE_PATH|JAVA_TOOL_OPTIONS|_JAVA_OPTIONS|JDK_JAVA_OPTIONS|MINT_JOB_.*)$'; then
          fail "--allow-env $2 names a variable that would let a client run code of its choosing; set it with --env instead"
        fi
        allow_env=$2 ;;
      --gateway-path) gateway_path=$2 ;;
      --dest) dest=$2 ;;
      --key-name) check "$2" '^[A-Za-z0-9._@-]+$' '--key-name may hold only letters, digits and ._@-'; key_name=$2 ;;
      --export) check "$2" '^[A-Za-z0-9._*?/,+=@%-]+$' '--export holds a character outside A-Za-z0-9._*?/,+=@%-'; export_globs=$2 ;;
      --max-jobs | --min-free-mb | --max-age-days | --grace | --min-free-inodes | --max-job-mb | --max-job-files | --client-timeout | \
        --max-cpus | --max-memory-mb | --max-walltime-min)
        check "$2" '^[0-9]+$' "$1 must be a whole number"
        [ ${#2} -le 9 ] || fail "$1 must be a whole number"
        set_number "$1" "$2" ;;
      --env)
        check "$2" '^[A-Za-z_][A-Za-z0-9_]*=[ -~]*$' "--env '$2' must be NAME=VALUE (NAME of letters, digits and _; VALUE printable ASCII without quotes or backslashes)"
        case $2 in *\'* | *\"* | *\\*) fail "--env '$2' must be NAME=VALUE (NAME of letters, digits and _; VALUE printable ASCII without quotes or backslashes)" ;; esac
        env_words="${env_words:-} --env '$2'" ;;
      --rsync) rsync_path=$2 ;;
      --scheduler)
        case $2 in
          none | slurm | sge | pbs) scheduler=$2 ;;
          *) fail "--scheduler must be slurm, sge, pbs or none, got '$2'" ;;
        esac ;;
      --scheduler-bin)
        check "$2" '^/[A-Za-z0-9._/+@%,:=-]*$' "--scheduler-bin must be an absolute path of [A-Za-z0-9._/+@%,:=-]"
        scheduler_bin=$2 ;;
      --scheduler-args)
        check "$2" '^[A-Za-z0-9 ._,:=+@%/-]+$' "--scheduler-args holds a byte outside [A-Za-z0-9 ._,:=+@%/-]"
        case $2 in ' '* | *' ' | *'  '*) fail "--scheduler-args: tokens must be separated by exactly one space" ;; esac
        scheduler_args=$2 ;;
      --from) check "$2" '^[A-Za-z0-9.:*?!,/_-]+$' '--from must be an sshd pattern-list (hosts, addresses, CIDR, * ? !)'; from=$2 ;;
      --expiry-time) check "$2" '^[0-9]{8}([0-9]{4}([0-9]{2})?)?Z?$' '--expiry-time must be YYYYMMDD[HHMM[SS]][Z]'; expiry=$2 ;;
      --principals) check "$2" '^[A-Za-z0-9._@,-]+$' '--principals must be a comma-separated list of names'; principals=$2 ;;
      *) usage "unknown option '$1'" ;;
    esac
    shift 2
  done
  [ -n "$key" ] || usage "--key FILE is required"
  [ -z "$principals" ] || [ -n "$cert" ] || fail "--principals needs --cert-authority"
  [ "${n_client_timeout:-1}" != 0 ] || fail "--client-timeout must be at least 1 second"
}

# check VALUE ERE MESSAGE: the whole value matches the extended regular expression.
check() {
  case $1 in *"$NL"*) fail "$3" ;; esac
  printf '%s\n' "$1" | grep -Eq -- "$2" || fail "$3"
}

set_number() {
  case $1 in
    --max-jobs) n_max_jobs=$2 ;;
    --min-free-mb) n_min_free_mb=$2 ;;
    --max-age-days) n_max_age_days=$2 ;;
    --grace) n_grace=$2 ;;
    --min-free-inodes) n_min_free_inodes=$2 ;;
    --max-job-mb) n_max_job_mb=$2 ;;
    --max-job-files) n_max_job_files=$2 ;;
    --client-timeout) n_client_timeout=$2 ;;
    --max-cpus) n_max_cpus=$2 ;;
    --max-memory-mb) n_max_memory_mb=$2 ;;
    --max-walltime-min) n_max_walltime_min=$2 ;;
  esac
}

# The public key: one line `TYPE BASE64 [comment]` of a known type whose blob says the same type
# (ssh-keygen reads the blob); its SHA256 fingerprint marks our line.
read_key() {
  [ -r "$key" ] || fail "cannot read the key file $key"
  key_line=$(grep -v '^[[:space:]]*#' -- "$key" | grep -v '^[[:space:]]*$' | head -n 1)
  set -f
  # shellcheck disable=SC2086
  set -- $key_line
  set +f
  [ $# -ge 2 ] || fail 'no public key found: expected a line like "ssh-ed25519 AAAA... comment"'
  key_type=$1 key_b64=$2
  case $key_type in
    ssh-ed25519) want=ED25519 ;;
    ssh-rsa) want=RSA ;;
    ecdsa-sha2-nistp256 | ecdsa-sha2-nistp384 | ecdsa-sha2-nistp521) want=ECDSA ;;
    sk-ssh-ed25519@openssh.com) want=ED25519-SK ;;
    sk-ecdsa-sha2-nistp256@openssh.com) want=ECDSA-SK ;;
    *) fail "unsupported or malformed key type \"$key_type\" (a private key? give the .pub file)" ;;
  esac
  check "$key_b64" '^[A-Za-z0-9+/]+={0,2}$' "the key's base64 part is malformed"
  tmp_key=$(mktemp) || fail "cannot make a temporary file"
  printf '%s %s\n' "$key_type" "$key_b64" >"$tmp_key"
  fp_line=$(ssh-keygen -l -E sha256 -f "$tmp_key" 2>/dev/null)
  rm -f -- "$tmp_key"
  [ -n "$fp_line" ] || fail "the key's base64 part does not decode to an SSH key"
  set -f
  # shellcheck disable=SC2086
  set -- $fp_line
  set +f
  key_fp=$2
  for got; do :; done
  [ "$got" = "($want)" ] || fail "the key says $key_type but its data is $got"
}

# The command= value, word for word as the Node installer builds it.
gateway_command() {
  for p in "$gateway_path" "$root" "$program" ${rsync_path:+"$rsync_path"}; do
    check "$p" '^/[A-Za-z0-9._/+-]*$' "path \"$p\" must be an absolute path of letters, digits and ._/+- only"
  done
  cmd="$gateway_path --root $root --program $program${named_programs:-}"
  [ -z "${key_name:-}" ] || cmd="$cmd --key-name $key_name"
  [ -z "${export_globs:-}" ] || cmd="$cmd --export '$export_globs'"
  [ -z "${n_max_jobs:-}" ] || cmd="$cmd --max-jobs $n_max_jobs"
  [ -z "${n_min_free_mb:-}" ] || cmd="$cmd --min-free-mb $n_min_free_mb"
  [ -z "${n_max_age_days:-}" ] || cmd="$cmd --max-age-days $n_max_age_days"
  [ -z "${n_grace:-}" ] || cmd="$cmd --grace $n_grace"
  [ -z "${n_min_free_inodes:-}" ] || cmd="$cmd --min-free-inodes $n_min_free_inodes"
  [ -z "${n_max_job_mb:-}" ] || cmd="$cmd --max-job-mb $n_max_job_mb"
  [ -z "${n_max_job_files:-}" ] || cmd="$cmd --max-job-files $n_max_job_files"
  [ -z "${n_client_timeout:-}" ] || cmd="$cmd --client-timeout $n_client_timeout"
  [ -z "${n_max_cpus:-}" ] || cmd="$cmd --max-cpus $n_max_cpus"
  [ -z "${n_max_memory_mb:-}" ] || cmd="$cmd --max-memory-mb $n_max_memory_mb"
  [ -z "${n_max_walltime_min:-}" ] || cmd="$cmd --max-walltime-min $n_max_walltime_min"
  cmd="$cmd${env_words:-}"
  [ -z "${allow_env:-}" ] || cmd="$cmd --allow-env $allow_env"
  [ -z "${rsync_path:-}" ] || cmd="$cmd --rsync $rsync_path"
  [ -z "${enforce_scope:-}" ] || cmd="$cmd --enforce-job-scope"
  [ -z "${hash_uploads:-}" ] || cmd="$cmd --hash-uploads"
  if [ "${scheduler:-none}" != none ]; then
    cmd="$cmd --scheduler $scheduler"
  fi
  if [ -n "${scheduler_bin:-}" ]; then
    [ "${scheduler:-none}" != none ] || fail "--scheduler-bin needs --scheduler slurm, sge or pbs"
    cmd="$cmd --scheduler-bin $scheduler_bin"
  fi
  if [ -n "${scheduler_args:-}" ]; then
    [ "${scheduler:-none}" != none ] || fail "--scheduler-args needs --scheduler slurm, sge or pbs"
    # Options the gateway sets itself on every submission (as mgw_sched_gateway_option).
    case $scheduler in
      slurm) gw_opts='^(--wrap|--output|--error|--input|--chdir|-D|--job-name|-J|--parsable|--wait|-W|--array|-a|--export-file|--batch|--open-mode|-o|-e|-i)' ;;
      sge) gw_opts='^-(b|o|e|j|N|wd|cwd|terse|sync|S|@|i|t|now|shell)$' ;;
      *) gw_opts='^-([NoejSIJXkdwz]|W.*block)' ;;
    esac
    prev=
    for tok in $scheduler_args; do
      if printf '%s\n' "$tok" | grep -Eq -- "$gw_opts" || { [ "$scheduler" = pbs ] && [ "$prev" = -W ] && case $tok in block*) true ;; *) false ;; esac; }; then
        fail "--scheduler-args may not set '$tok': the gateway sets it"
      fi
      prev=$tok
    done
    cmd="$cmd --scheduler-args '$scheduler_args'"
  fi
}

key_options() {
  opts="restrict,command=\"$cmd\""
  [ -z "$from" ] || opts="$opts,from=\"$from\""
  [ -z "$expiry" ] || opts="$opts,expiry-time=\"$expiry\""
  if [ -n "$cert" ]; then
    opts="cert-authority,$opts"
    [ -z "$principals" ] || opts="$opts,principals=\"$principals\""
  fi
}

# The gateway refuses a root that is, holds or sits in ~/.ssh: refused here before anything changes.
check_root_place() {
  real_home=$(cd -P -- "$home" 2>/dev/null && pwd -P) || real_home=$home
  real_root=$(cd -P -- "$root" 2>/dev/null && pwd -P) || real_root=$root
  case $real_root/ in
    / | "$real_home"/ | "$real_home"/.ssh/*) fail "--root $root is the home dir, holds ~/.ssh or is inside it; use a dedicated dir such as ~/mint-jobs" ;;
  esac
  case $real_home/.ssh/ in
    "$real_root"/*) fail "--root $root is the home dir, holds ~/.ssh or is inside it; use a dedicated dir such as ~/mint-jobs" ;;
  esac
}

install_script() {
  source_script=$(dirname -- "$0")/mint-gateway.sh
  [ -r "$source_script" ] || fail "mint-gateway.sh must sit beside this installer ($source_script)"
  mkdir -p -- "$(dirname -- "$gateway_path")" || fail "cannot create $(dirname -- "$gateway_path")"
  { cp -- "$source_script" "$gateway_path.$$.tmp" && chmod 755 -- "$gateway_path.$$.tmp" &&
    mv -f -- "$gateway_path.$$.tmp" "$gateway_path"; } || fail "cannot install the gateway at $gateway_path"
}

# Our line for this key (same key blob, whatever options it carries now) is replaced in place, or
# appended; authorized_keys is written beside and renamed, keeping its mode without group/other
# write.
write_line() {
  mkdir -p -- "$(dirname -- "$dest")" || fail "cannot create $(dirname -- "$dest")"
  tmp=$dest.$$.tmp
  if [ -f "$dest" ]; then
    LINE=$line KEY=" $key_type $key_b64" awk '
      BEGIN { line = ENVIRON["LINE"]; key = ENVIRON["KEY"]; found = 0; same = 0 }
      !found && (index($0, key " ") > 0 || substr($0, length($0) - length(key) + 1) == key) {
        found = 1; if ($0 == line) same = 1; print line; next
      }
      { print }
      END { if (!found) print line; exit (same ? 3 : (found ? 4 : 5)) }
    ' "$dest" >"$tmp"
    rc=$?
    case $rc in
      3) rm -f -- "$tmp"; action=unchanged; return 0 ;;
      4) action=updated ;;
      5) action=added ;;
      *) rm -f -- "$tmp"; fail "cannot rewrite $dest" ;;
    esac
    mode=$(stat -c %a -- "$dest") || mode=600
    { chmod "$mode" -- "$tmp" && chmod go-w -- "$tmp"; } || fail "cannot set the mode of $tmp"
  else
    printf '%s\n' "$line" >"$tmp" || fail "cannot write $tmp"
    chmod 600 -- "$tmp"
    action=added
  fi
  mv -f -- "$tmp" "$dest" || fail "cannot replace $dest"
}

# ---------------------------------------------------------------------------------------------------
# verify-audit: the chain of ROOT/.mint-gateway-audit.log (mgw_audit_chain in the gateway; the Node
# reader is src/site/audit-chain.ts, whose messages these are). Each line's hash, newline included,
# comes from one sha256sum over the log split into one file per line (split -l 1: the line's bytes
# as they are, never through the shell); one awk then walks the chain.

verify_audit() {
  root=${HOME:-}/mint-jobs
  heads=
  while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || usage "$1 needs a value"
    case $1 in
      --root) root=$2 ;;
      --head)
        case $2 in
          *[!0-9a-fA-F]*) usage "--head takes a SHA-256 in hex, got '$2'" ;;
        esac
        [ ${#2} -eq 64 ] || usage "--head takes a SHA-256 in hex, got '$2'"
        heads="$heads $(printf '%s' "$2" | tr 'A-F' 'a-f')" ;;
      *) usage "unknown verify-audit option '$1'" ;;
    esac
    shift 2
  done
  case $root in /*) ;; *) root=$(pwd)/$root ;; esac
  log=$root/.mint-gateway-audit.log
  { [ -r "$log" ] && [ -f "$log" ]; } || fail "cannot read the audit log $log"
  if [ ! -s "$log" ]; then
    # No line: the chain is its start; a kept head cannot be in it.
    nh=0
    for h in $heads; do
      printf '%s:0: no line of this log has the hash %s: the log was rewritten or cut after that line was written\n' "$log" "$h"
      nh=$((nh + 1))
    done
    if [ $nh = 0 ]; then printf 'ok: 0 lines, the chain holds; head e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n'; exit 0; fi
    printf 'FAIL: %s break(s) in 0 lines\n' "$nh"
    exit 1
  fi
  tmp=$(mktemp -d) || fail "cannot make a temporary directory"
  trap 'rm -rf -- "$tmp"' EXIT
  # A last line without its newline is reported, and not hashed as if it had one.
  partial=0
  [ ! -s "$log" ] || [ "$(tail -c 1 -- "$log" | od -An -tx1 | tr -d ' \n')" = 0a ] || partial=1
  (cd "$tmp" && split -l 1 -a 9 -- "$log" l.) || fail "cannot split the audit log into $tmp (disk full?)"
  set +f
  set -- "$tmp"/l.*
  set -f
  : >"$tmp/sums"
  if [ -e "$1" ]; then sha256sum -- "$@" >"$tmp/sums" || fail "cannot hash the audit log's lines"; fi
  # shellcheck disable=SC2016
  awk -v file="$log" -v partial="$partial" -v heads="$heads" -v genesis=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 '
    function problem(line, message) { if (np < 50) { out[np] = file ":" line ": " message }; np++ }
    # (0, not "": an unset variable is the empty string as a subscript.)
    BEGIN { np = 0; ns = 0 }
    NR == FNR { h[FNR] = $1; next }
    {
      n = FNR
      if (partial && n == nlines) next
      if (match($0, /^[^ ]+ prev=[0-9a-f]+ /) && RLENGTH == length($1) + 71) {
        chained = 1
        prev = substr($0, length($1) + 7, 64)
        want = n == 1 ? genesis : h[n - 1]
        if (prev != want) {
          if (n == 1) problem(1, "line 1 does not start the chain: lines before it were deleted")
          else problem(n, "line " n " does not follow line " n - 1 " (its prev= is not line " n - 1 "\047s hash): line " n - 1 " was edited, or lines between them were deleted or inserted")
        }
      } else if (chained) problem(n, "line " n " has no prev= field: inserted, or edited (every line after the first chained one carries one)")
      else unchained++
    }
    END {
      lines = FNR
      if (partial) problem(lines, "line " lines " has no newline: a write cut short that was not cut back, or an edit")
      head = lines - partial > 0 ? h[lines - partial] : genesis
      nh = split(heads, wanted, " ")
      for (i = 1; i <= nh; i++) {
        found = 0
        for (j = 1; j <= lines - partial; j++) if (h[j] == wanted[i]) { found = j; break }
        if (found) seen[++ns] = "head " wanted[i] ": line " found
        else { out[np] = file ":" lines ": no line of this log has the hash " wanted[i] ": the log was rewritten or cut after that line was written"; np++ }
      }
      for (i = 0; i < np && i < 50 + nh; i++) if (i in out) print out[i]
      for (i = 1; i <= ns; i++) print seen[i]
      if (np == 0) {
        old = unchained > 0 ? " (the first " unchained " from a gateway before the chain)" : ""
        print "ok: " lines " lines" old ", the chain holds; head " head
        exit 0
      }
      print "FAIL: " np " break(s) in " lines " lines"
      exit 1
    }' nlines="$(wc -l <"$tmp/sums")" "$tmp/sums" "$log"
  exit $?
}

# ---------------------------------------------------------------------------------------------------
# doctor

doctor() {
  home=${HOME:-}
  [ -n "$home" ] || fail "HOME is not set"
  root=$home/mint-jobs
  program=$home/misrc_remote_workflow/scripts/execute_remote-side_program_ssh.sh
  gateway_path=$home/.mint/mint-gateway.sh
  dest=$home/.ssh/authorized_keys
  while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || usage "$1 needs a value"
    case $1 in
      --root) root=$2 ;;
      --program) program=$2 ;;
      --gateway-path) gateway_path=$2 ;;
      --dest) dest=$2 ;;
      *) usage "unknown doctor option '$1'" ;;
    esac
    shift 2
  done
  n_ok=0 n_warn=0 n_skip=0 n_err=0
  our_lines=
  [ -r "$dest" ] && our_lines=$(grep 'mint-gateway:SHA256:' -- "$dest")

  # ~/.ssh/rc runs before a forced command unless restrict (or no-user-rc) is on the key's line.
  if [ ! -e "$home/.ssh/rc" ]; then
    say ok ssh-rc "no ~/.ssh/rc"
  elif [ -n "$our_lines" ] && ! printf '%s\n' "$our_lines" | grep -Evq '^(cert-authority,)?restrict|no-user-rc'; then
    say ok ssh-rc "$home/.ssh/rc exists (the gateway line has restrict, so it does not run for MInt's key)"
  else
    say error ssh-rc "$home/.ssh/rc exists and would run before the gateway" "reinstall (adds restrict) or remove ~/.ssh/rc"
  fi

  if [ -e "$dest" ] && [ ! -r "$dest" ]; then
    say skipped authorized-key "cannot read $dest, so could not look for the mint-gateway line" "run doctor as the account that owns it"
  elif [ -z "$our_lines" ]; then
    say error authorized-key "no mint-gateway line in $dest" "run sh mint-gateway-install.sh --key mint.pub ..."
  elif printf '%s\n' "$our_lines" | grep -Fv "command=\"$gateway_path " | grep -q . ||
    printf '%s\n' "$our_lines" | grep -Evq '(^|,)restrict(,| )'; then
    say error authorized-key "a mint-gateway line lacks restrict or points at another gateway path" "rerun the installer to rewrite it"
  else
    say ok authorized-key "$(printf '%s\n' "$our_lines" | wc -l | tr -d ' ') mint-gateway line(s), restricted and pinned to $gateway_path"
  fi

  doctor_sshd
  doctor_scope
  doctor_shell
  mode_check authorized-keys-mode "$dest" "chmod 600"
  mode_check ssh-dir-mode "$home/.ssh" "chmod 700"
  mode_check gateway-mode "$gateway_path" "chmod 755 (and owned by this account)" x
  doctor_root
  for tool in rsync setsid flock tail; do
    found=
    for d in /usr/bin /bin; do [ -x "$d/$tool" ] && { found=$d/$tool; break; }; done
    case $tool in setsid | flock) pkg=util-linux ;; tail) pkg=coreutils ;; *) pkg=$tool ;; esac
    if [ -n "$found" ]; then say ok "needs-$tool" "$found"; else say error "needs-$tool" "$tool not found in /usr/bin or /bin" "install $pkg"; fi
  done
  if [ -f "$program" ] && [ -x "$program" ]; then
    say ok program "$program is executable"
  else
    say error program "$program is missing or not executable" "chmod +x $program"
  fi
  printf '  summary: %s ok, %s warnings, %s skipped, %s errors\n' "$n_ok" "$n_warn" "$n_skip" "$n_err"
  if [ "$n_err" -gt 0 ]; then
    printf '  verdict: fix the FAIL lines above\n'
    exit 1
  fi
  if [ "$n_skip" -gt 0 ]; then
    printf '  verdict: the gateway holds as far as checked; the SKIPPED lines were not checked\n'
  else
    printf '  verdict: the gateway holds\n'
  fi
  exit 0
}

# say STATUS CHECK DETAIL [FIX]: one line as mint-gateway doctor prints it.
say() {
  case $1 in
    ok) mark='[ ok ]   ' n_ok=$((n_ok + 1)) ;;
    warn) mark='[ warn ] ' n_warn=$((n_warn + 1)) ;;
    skipped) mark='[SKIPPED]' n_skip=$((n_skip + 1)) ;;
    *) mark='[FAIL]   ' n_err=$((n_err + 1)) ;;
  esac
  printf '  %s %-20s %s\n' "$mark" "$2" "$3"
  [ -z "${4:-}" ] || printf '             fix: %s\n' "$4"
}

# Read by the loader or the login shell before the gateway's own scrubbing can run.
doctor_sshd() {
  sshd=
  for d in /usr/sbin /usr/bin /sbin /bin; do [ -x "$d/sshd" ] && { sshd=$d/sshd; break; }; done
  fix="run \`sudo sshd -T | grep -Ei '^(permituserenvironment|acceptenv) '\` and check that PermitUserEnvironment is no and AcceptEnv matches none of LD_PRELOAD LD_LIBRARY_PATH LD_AUDIT BASH_ENV ENV PATH IFS SHELLOPTS PS4 BASH_FUNC_*; or run doctor as root"
  settings=
  if [ -z "$sshd" ]; then say skipped sshd-config "could not read sshd's settings: sshd not found" "$fix"; return; fi
  settings=$("$sshd" -T 2>/dev/null) || { settings=; say skipped sshd-config "could not read sshd's settings: \`$sshd -T\` failed; it usually needs root" "$fix"; return; }
  permit=$(printf '%s\n' "$settings" | sed -n 's/^permituserenvironment //p')
  [ -n "$permit" ] || { settings=; say skipped sshd-config "could not read sshd's settings: \`$sshd -T\` printed no permituserenvironment line" "$fix"; return; }
  accept=$(printf '%s\n' "$settings" | sed -n 's/^acceptenv //p' | tr '\n' ' ')
  problems=
  [ "$permit" = no ] || problems="PermitUserEnvironment is on (environment= in keys could set LD_PRELOAD)"
  set -f
  for pattern in $accept; do
    for name in LD_PRELOAD LD_LIBRARY_PATH LD_AUDIT BASH_ENV ENV PATH IFS SHELLOPTS PS4 BASH_FUNC_x%%; do
      # shellcheck disable=SC2254
      case $name in $pattern) problems="${problems:+$problems; }AcceptEnv $pattern lets clients set $name before the gateway runs"; break ;; esac
    done
  done
  set +f
  if [ -n "$problems" ]; then
    say error sshd-config "$problems" "set PermitUserEnvironment no and narrow AcceptEnv in sshd_config"
  else
    say ok sshd-config "PermitUserEnvironment no; AcceptEnv ${accept% }"
  fi
}

# Whether a per-job certificate opens its own job only (as doctor.ts's jobScope): sshd must expose
# the certificate that logged in (ExposeAuthInfo yes), kept by the line's --enforce-job-scope.
doctor_scope() {
  ca_lines=$(printf '%s\n' "$our_lines" | grep '^cert-authority,')
  if [ -z "$ca_lines" ]; then
    say ok job-scope "no cert-authority line: no per-job certificates to scope"
    return
  fi
  enforced=1
  printf '%s\n' "$ca_lines" | grep -Evq ' --enforce-job-scope[ "]' && enforced=
  expose=$(printf '%s\n' "$settings" | sed -n 's/^exposeauthinfo //p')
  how="set ExposeAuthInfo yes in sshd_config (and reload sshd), and reinstall with --enforce-job-scope"
  if [ -z "$expose" ]; then
    say skipped job-scope "could not read sshd's ExposeAuthInfo${enforced:+ (the line says --enforce-job-scope: without it every request is refused)}" \
      "run \`sudo sshd -T | grep -i '^exposeauthinfo '\`: per-job certificates are scoped to their job only with yes"
  elif [ "$expose" != yes ]; then
    if [ -n "$enforced" ]; then
      say error job-scope "the line says --enforce-job-scope but sshd has ExposeAuthInfo no: every request is refused" "$how"
    else
      say warn job-scope "not enforced: sshd has ExposeAuthInfo no, so a per-job certificate can open any job" "$how"
    fi
  elif [ -n "$enforced" ]; then
    say ok job-scope "enforced: a per-job certificate opens its own job only (ExposeAuthInfo yes, --enforce-job-scope)"
  else
    say warn job-scope "enforced while sshd has ExposeAuthInfo yes; without --enforce-job-scope on the line, turning it off would lift the scope silently" "reinstall with --enforce-job-scope"
  fi
}

# sshd runs the forced command through the login shell: one that prints breaks the protocol.
doctor_shell() {
  shell=$(getent passwd "$(id -un)" 2>/dev/null | cut -d: -f7)
  [ -n "$shell" ] || shell=/bin/sh
  dir=$home
  [ -d "$dir" ] || dir=/
  out=$(cd "$dir" && HOME=$home SSH_CLIENT='127.0.0.1 22 22' SSH_CONNECTION='127.0.0.1 22 127.0.0.1 22' "$shell" -c true 2>&1) ||
    { say error login-shell "$shell -c true failed" "fix the account's shell or its startup files"; return; }
  if [ -n "$out" ]; then
    say error login-shell "$shell prints at start-up: $(printf '%s' "$out" | head -c 120)" "make the startup files quiet for non-interactive shells, or chsh -s /bin/sh for this account"
  else
    say ok login-shell "$shell starts silently"
  fi
}

# mode_check CHECK PATH FIX [x] [OK-DETAIL]: not writable by group or others, ours (or root's),
# executable if x.
mode_check() {
  if [ ! -e "$2" ]; then say error "$1" "$2 does not exist" "run the installer"; return; fi
  info=$(stat -c '%a %u' -- "$2" 2>/dev/null) || { say skipped "$1" "cannot stat $2" "check \`ls -ld $2\` as root"; return; }
  mode=${info% *} owner=${info#* }
  why=
  case $mode in *[2367]? | *[2367]) why="writable by group or others" ;; esac
  [ "$owner" = "$(id -u)" ] || [ "$owner" = 0 ] || why="${why:+$why, }owned by another user"
  [ "${4:-}" != x ] || [ -x "$2" ] || why="${why:+$why, }not executable"
  if [ -n "$why" ]; then say error "$1" "$2 is $why" "$3 $2"; else say ok "$1" "${5:-$2 mode $mode}"; fi
}

doctor_root() {
  if [ ! -e "$root" ]; then say error job-root "$root does not exist" "mkdir -m 700 $root"; return; fi
  real=$(cd -P -- "$root" 2>/dev/null && pwd -P) || { say skipped job-root "cannot resolve $root" "run doctor as the account that owns it"; return; }
  real_home=$(cd -P -- "$home" 2>/dev/null && pwd -P) || real_home=$home
  case $real/ in
    "$real_home"/ | "$real_home"/.ssh/*) say error job-root "$root is the home dir, holds ~/.ssh, or is inside it" "use a dedicated directory such as ~/mint-jobs"; return ;;
  esac
  case $real_home/.ssh/ in
    "$real"/*) say error job-root "$root is the home dir, holds ~/.ssh, or is inside it" "use a dedicated directory such as ~/mint-jobs"; return ;;
  esac
  mode_check job-root "$real" "chmod 700" '' "$real is a private directory"
}

main "$@"
