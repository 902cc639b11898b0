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
#     [--max-age-days N] [--min-free-inodes N] [--max-job-mb N] [--max-job-files N]
#     [--client-timeout SECONDS] [--env NAME=VALUE]... [--program NAME=PATH]... [--allow-env NAMES]
#     [--rsync PATH] [--allow-unconfined-rsync]
#     [--from PATTERNS] [--expiry-time TIME] [--cert-authority [--principals NAMES]] [--print]
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
  parse_options "$@"
  read_key
  gateway_command
  key_options
  line="$opts $key_type $key_b64 mint-gateway:$key_fp"
  if [ -n "$print" ]; then
    printf '%s\n' "$line"
    exit 0
  fi
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
      --allow-unconfined-rsync) allow_unconfined=1; shift; continue ;;
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
      --max-jobs | --min-free-mb | --max-age-days | --min-free-inodes | --max-job-mb | --max-job-files | --client-timeout)
        check "$2" '^[0-9]+$' "$1 must be a whole number"
        [ ${#2} -le 9 ] || fail "$1 must be a whole number"
        set_number "$1" "$2" ;;
      --env)
        check "$2" '^[A-Za-z_][A-Za-z0-9_]*=[ -~]*$' "--env '$2' must be NAME=VALUE (NAME of letters, digits and _; VALUE printable ASCII without quotes or backslashes)"
        case $2 in *\'* | *\"* | *\\*) fail "--env '$2' must be NAME=VALUE (NAME of letters, digits and _; VALUE printable ASCII without quotes or backslashes)" ;; esac
        env_words="${env_words:-} --env '$2'" ;;
      --rsync) rsync_path=$2 ;;
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
    --min-free-inodes) n_min_free_inodes=$2 ;;
    --max-job-mb) n_max_job_mb=$2 ;;
    --max-job-files) n_max_job_files=$2 ;;
    --client-timeout) n_client_timeout=$2 ;;
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
  [ -z "${n_min_free_inodes:-}" ] || cmd="$cmd --min-free-inodes $n_min_free_inodes"
  [ -z "${n_max_job_mb:-}" ] || cmd="$cmd --max-job-mb $n_max_job_mb"
  [ -z "${n_max_job_files:-}" ] || cmd="$cmd --max-job-files $n_max_job_files"
  [ -z "${n_client_timeout:-}" ] || cmd="$cmd --client-timeout $n_client_timeout"
  cmd="$cmd${env_words:-}"
  [ -z "${allow_env:-}" ] || cmd="$cmd --allow-env $allow_env"
  [ -z "${rsync_path:-}" ] || cmd="$cmd --rsync $rsync_path"
  [ -z "${allow_unconfined:-}" ] || cmd="$cmd --allow-unconfined-rsync"
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

main "$@"
