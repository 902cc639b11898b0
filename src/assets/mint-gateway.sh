#!/bin/sh
# shellcheck shell=dash
#
# mint-gateway.sh: the forced command behind MInt's key on an external computer.
#
# sshd runs this for every exec, shell and subsystem request made with the key, because its
# authorized_keys line says
#   restrict,command="/home/u/.mint/mint-gateway.sh --root /home/u/mint-jobs --program /home/u/prog.sh" ssh-ed25519 AAAA... mint
# The client's wish arrives in SSH_ORIGINAL_COMMAND. This script is the only thing that reads it. It
# never hands that string, or any piece of it, to a shell: it checks the whole string against a byte
# allow-list, splits it on single spaces, checks every token against an anchored pattern, and then
# runs a fixed argv built here. Paths are never taken from the client: a job is named by a UUID and
# lives in ROOT/UUID; an upload's rsync server arguments come from a template in this file (the
# client only supplies rsync's capability letters), and a download runs rsync's daemon mode with a
# config written here, whose one module is a staging tree of the job (mgw_serve_download).
#
# Requirements on the external computer: POSIX sh, coreutils, rsync >= 3.1.0 (downloads run its
# daemon mode, confined to a staging tree: mgw_serve_download), setsid and flock (util-linux).
#
# Exit codes: 0 success; for put/get/take, rsync's own exit code (1..35); the gateway's refusals use
# 64..79 so that they never collide with rsync's, each with one line on stderr:
#   mint-gw: error: E_CODE: what went wrong
# 64 E_USAGE      malformed or unknown command, wrong argument count, a token outside its pattern
# 65 E_NOCOMMAND  no command (a shell request)
# 66 E_SUBSYSTEM  a subsystem request (sftp, and scp which speaks sftp)
# 67 E_NOJOB      the job does not exist
# 68 E_STATE      the job is in the wrong state for the verb (put after start, rm while running...)
# 69 E_LIMIT      a site limit refuses it (max jobs, free disk or inodes, job size, the audit log
#                 cannot be written)
# 70 E_INTERNAL   a step that should not fail did
# 71 E_INTEGRITY  the job's inputs are not the bytes the client sent (startx/runx `manifest`):
#                 the program was not started
# 72 E_INLINE     takex: the results are not small and plain enough for an inline stream (a symlink,
#                 a special file, or over the size); nothing was sent: take them with take
# 73 E_SCOPE      the certificate that logged in is for another job (a per-job certificate,
#                 mgw_check_scope): it may touch its own job only, and list no jobs
# 78 E_CONFIG     the gateway's own options or the job root are unsafe or wrong (fix authorized_keys)

MGW_PROTOCOL=2
MGW_VERSION=0.4.0
MGW_VERBS='probe list put putx get take takex start run startx runx jobx status logs cancel rm'
# putx and takex (mgw_verb_putx): a small job's files in a stream of our own, without rsync.
MGW_INLINE_MAX=1048576
MGW_INLINE_ENTRIES=1000
MGW_MAX_COMMAND=4096
MGW_MAX_ARGS=64
MGW_NL='
'

# ---------------------------------------------------------------------------------------------------
# main: the whole request, top to bottom. Options from authorized_keys (trusted, still checked),
# the binaries the gateway runs (absolute paths from /usr/bin, /bin, /usr/sbin, /sbin), the job
# root, then the client's command: read (mgw_read_command) and checked in full by the one check
# stage (mgw_check_request, which validates every token before anything acts on it), then one
# verb. The runner mode (--run-job, only ever from this script's own argv) is fenced off at the end
# of the file.

main() {
  mgw_scrub_env
  MGW_VERB=
  MGW_JOB=
  # The audit's state (mgw_audit): never from the environment.
  MGW_ACCEPTED=
  MGW_ERROR=
  MGW_REFUSED=
  MGW_OUTCOME_NOTE=
  MGW_REQ=$$
  mgw_putting=
  mgw_fifo=
  mgw_hashing=
  mgw_sentinel=
  mgw_spool=
  mgw_staged=
  # Set only by mgw_read_request, after its checks: never from the environment.
  unset MGW_REQUEST MGW_REQUEST_PROGRAM
  MGW_REQUEST_MANIFEST=
  MGW_INPUTS=
  mgw_mffile=
  # rsync's features, read by mgw_rsync_help: never from the environment (an inherited "already
  # read" with an empty text would turn --confine-root off).
  MGW_RSYNC_HELP=
  MGW_RSYNC_HELP_READ=
  MGW_CLIENT_ENV=
  mgw_parse_options "$@"
  mgw_need mkdir
  MGW_MKDIR=$mgw_found
  mgw_need mv
  MGW_MV=$mgw_found
  mgw_need rmdir
  MGW_RMDIR=$mgw_found
  mgw_need rm
  MGW_RM=$mgw_found
  if [ "$MGW_MODE" = run ]; then
    shift $(($# - $(mgw_count_run_args "$@")))
    mgw_run_job "$@"
    exit 0
  fi
  if [ "$MGW_MODE" = sched ]; then
    for mgw_a in "$@"; do :; done
    mgw_sched_run_job "$mgw_a"
  fi
  # This request's id on its audit lines: our pid and its start time, which no later process
  # shares (the pair that names a runner, mgw_alive).
  if mgw_proc_start $$ && [ "$mgw_pstart" != - ]; then MGW_REQ=$$.$mgw_pstart; fi
  # Every exit (a verb's own, a refusal, the signals below) goes through mgw_at_exit, which cleans
  # up after the verb and writes the request's outcome line. A signal would end the shell without
  # running an EXIT trap, so the ones a dropped client brings are turned into exits (128 + signal,
  # as a shell reports a death by signal): a put or get whose client went must still remove its
  # marker or staging tree, and record why it ended.
  trap 'mgw_at_exit $?' EXIT
  trap 'exit 129' HUP
  trap 'exit 143' TERM
  trap 'exit 141' PIPE
  # Every request is audited under an exclusive lock (mgw_audit), and state changes take one too.
  mgw_need flock
  MGW_FLOCK=$mgw_found
  mgw_need chmod
  MGW_CHMOD=$mgw_found
  mgw_check_root
  mgw_read_command
  mgw_check_scope
  mgw_check_request
  # From here on every value a verb reads is validated: MGW_VERB, MGW_JOB (and the paths made
  # from it), MGW_CAPS, MGW_OFFSET, MGW_PROG_ARGS; and a per-job certificate names MGW_JOB.
  case $MGW_VERB in
    probe) mgw_verb_probe ;;
    list) mgw_verb_list ;;
    put) mgw_verb_put ;;
    putx) mgw_verb_putx ;;
    get | take | takex) mgw_verb_get ;;
    start | startx) mgw_verb_start ;;
    run | runx) mgw_verb_run ;;
    jobx) mgw_verb_jobx ;;
    status) mgw_verb_status ;;
    logs) mgw_verb_logs ;;
    cancel) mgw_verb_cancel ;;
    rm) mgw_verb_rm ;;
  esac
}

# In runner mode, the arguments after --run-job: the count from the end of "$@".
mgw_count_run_args() {
  mgw_n=0
  mgw_seen=
  for mgw_a in "$@"; do
    if [ -n "$mgw_seen" ]; then mgw_n=$((mgw_n + 1)); fi
    [ "$mgw_a" != --run-job ] || mgw_seen=1
  done
  printf '%s\n' "$mgw_n"
}

# ---------------------------------------------------------------------------------------------------
# Output and failure

mgw_err() {
  printf 'mint-gw: error: %s\n' "$*" >&2
}

# die CODE-NAME EXIT MESSAGE: one audit line, one line on stderr, exit. Before the request was
# accepted that line is its refusal (its only line); after, the EXIT trap's outcome line names the
# code. The audit comes first: a client that has gone makes the write to stderr raise SIGPIPE, and
# a stolen key probing with requests it drops at once went unaudited (red-team finding).
mgw_die() {
  if [ -n "$MGW_ACCEPTED" ]; then
    MGW_ERROR=$1
  elif [ -z "$MGW_REFUSED" ]; then
    MGW_REFUSED=$1
    mgw_audit "decision=refused:$1 exit=$2"
  fi
  mgw_err "$1: $3"
  exit "$2"
}

# The EXIT trap (serve mode): what the verb leaves to clean (an upload's marker and pipe, a
# download's staging tree), then the outcome line of an accepted request. That line is written
# after the request acted, so failing to write it cannot refuse anything: it is best effort, and
# still whole or absent.
mgw_at_exit() {
  mgw_exit_rc=$1
  [ -z "$mgw_putting" ] || "$MGW_RM" -f -- "$mgw_putting"
  [ -z "$mgw_fifo" ] || "$MGW_RM" -f -- "$mgw_fifo"
  [ -z "$mgw_sentinel" ] || kill "$mgw_sentinel" 2>/dev/null
  [ -z "$mgw_hashing" ] || "$MGW_RM" -rf -- "$mgw_hashing"
  [ -z "$mgw_spool" ] || "$MGW_RM" -f -- "$mgw_spool"
  [ -z "$mgw_staged" ] || mgw_remove_job "$mgw_staged"
  [ -z "$mgw_mffile" ] || "$MGW_RM" -f -- "$mgw_mffile"
  if [ -n "$MGW_ACCEPTED" ]; then
    MGW_JOB=$MGW_ACCEPTED
    mgw_outcome "$mgw_exit_rc"
    mgw_audit "outcome=$mgw_outcome exit=$mgw_exit_rc${MGW_OUTCOME_NOTE:-}" || :
  elif [ -z "$MGW_REFUSED" ] && [ "$mgw_exit_rc" -ne 0 ]; then
    # Ended before it was accepted or refused: a client gone during the checks (SIGPIPE, HUP).
    # Every request leaves a line, this one too.
    mgw_outcome "$mgw_exit_rc"
    mgw_audit "decision=refused:$mgw_outcome exit=$mgw_exit_rc" || :
  fi
  exit "$mgw_exit_rc"
}

# mgw_outcome STATUS: sets mgw_outcome to ok, error:E_CODE (the gateway's own failure, exit
# 64-79), signal:NAME (a status above 128: what a shell reports for a death by that signal, ours or
# a child's; a program that itself exits 129-192 reads the same, which no shell can tell apart) or
# failed (any other status: rsync's own code for put/get/take, the program's for its end).
mgw_outcome() {
  if [ -n "$MGW_ERROR" ]; then
    mgw_outcome=error:$MGW_ERROR
  elif [ "$1" -eq 0 ]; then
    mgw_outcome=ok
  elif [ "$1" -gt 128 ] && [ "$1" -le 192 ] && mgw_sig=$(kill -l "$1" 2>/dev/null) && [ -n "$mgw_sig" ]; then
    mgw_outcome=signal:$mgw_sig
  else
    mgw_outcome=failed
  fi
}

# ---------------------------------------------------------------------------------------------------
# Environment. The login shell already ran (which is why the docs ask for /bin/sh as the account's
# shell); from here on nothing the client or the account's dotfiles set may steer a lookup.

mgw_scrub_env() {
  # What sshd gave the session, kept for the program (mgw_program_env), never for our own lookups.
  MGW_ACCOUNT_PATH=${PATH:-/usr/local/bin:/usr/bin:/bin}
  MGW_ACCOUNT_UMASK=$(umask)
  PATH=/usr/bin:/bin:/usr/sbin:/sbin
  export PATH
  LC_ALL=C
  export LC_ALL
  unset LD_PRELOAD LD_LIBRARY_PATH LD_AUDIT BASH_ENV ENV CDPATH GLOBIGNORE SHELLOPTS PS4 \
    RSYNC_RSH RSYNC_CONNECT_PROG RSYNC_PROTECT_ARGS RSYNC_OLD_ARGS TMPDIR 2>/dev/null
  IFS=' 	
'
  umask 077
}

# Binaries come from a fixed list of system directories, never from PATH.
mgw_which() {
  for mgw_dir in /usr/bin /bin /usr/sbin /sbin; do
    if [ -x "$mgw_dir/$1" ] && [ ! -d "$mgw_dir/$1" ]; then
      mgw_found=$mgw_dir/$1
      return 0
    fi
  done
  mgw_found=
  return 1
}

mgw_need() {
  mgw_which "$1" || mgw_die E_CONFIG 78 "required command '$1' not found in /usr/bin or /bin"
}

# ---------------------------------------------------------------------------------------------------
# Gateway options: these come from authorized_keys, which only the account owner can write, so they
# are trusted, but they are still checked so that a typo fails closed instead of widening access.

mgw_parse_options() {
  MGW_ROOT=
  MGW_PROGRAM=
  MGW_KEY_NAME=mint
  MGW_EXPORT=
  MGW_MAX_JOBS=0
  MGW_MIN_FREE_MB=0
  MGW_MAX_AGE_DAYS=0
  MGW_GRACE=10
  MGW_MIN_FREE_INODES=0
  MGW_MAX_JOB_MB=0
  MGW_MAX_JOB_FILES=0
  MGW_CLIENT_TIMEOUT=600
  MGW_SITE_ENV=
  MGW_PROGRAMS=
  MGW_ALLOW_ENV=,
  MGW_RSYNC=
  MGW_SCHEDULER=none
  MGW_SCHED_ARGS=
  MGW_SCHED_BIN=
  MGW_MAX_CPUS=0
  MGW_MAX_MEMORY_MB=0
  MGW_MAX_WALLTIME_MIN=0
  MGW_ENFORCE_SCOPE=
  MGW_HASH_UPLOADS=
  MGW_MODE=serve
  while [ $# -gt 0 ]; do
    case $1 in
      --root) [ $# -ge 2 ] || mgw_die E_CONFIG 78 "--root needs a value"; MGW_ROOT=$2; shift 2 ;;
      --program) [ $# -ge 2 ] || mgw_die E_CONFIG 78 "--program needs a value"; mgw_add_program "$2"; shift 2 ;;
      --allow-env) [ $# -ge 2 ] || mgw_die E_CONFIG 78 "--allow-env needs NAME[,NAME]"; mgw_add_allow_env "$2"; shift 2 ;;
      --key-name) [ $# -ge 2 ] || mgw_die E_CONFIG 78 "--key-name needs a value"; MGW_KEY_NAME=$2; shift 2 ;;
      --export) [ $# -ge 2 ] || mgw_die E_CONFIG 78 "--export needs a value"; MGW_EXPORT=$2; shift 2 ;;
      --max-jobs) [ $# -ge 2 ] || mgw_die E_CONFIG 78 "--max-jobs needs a value"; MGW_MAX_JOBS=$2; shift 2 ;;
      --min-free-mb) [ $# -ge 2 ] || mgw_die E_CONFIG 78 "--min-free-mb needs a value"; MGW_MIN_FREE_MB=$2; shift 2 ;;
      --max-age-days) [ $# -ge 2 ] || mgw_die E_CONFIG 78 "--max-age-days needs a value"; MGW_MAX_AGE_DAYS=$2; shift 2 ;;
      --grace) [ $# -ge 2 ] || mgw_die E_CONFIG 78 "--grace needs a value"; MGW_GRACE=$2; shift 2 ;;
      --min-free-inodes) [ $# -ge 2 ] || mgw_die E_CONFIG 78 "--min-free-inodes needs a value"; MGW_MIN_FREE_INODES=$2; shift 2 ;;
      --max-job-mb) [ $# -ge 2 ] || mgw_die E_CONFIG 78 "--max-job-mb needs a value"; MGW_MAX_JOB_MB=$2; shift 2 ;;
      --max-job-files) [ $# -ge 2 ] || mgw_die E_CONFIG 78 "--max-job-files needs a value"; MGW_MAX_JOB_FILES=$2; shift 2 ;;
      --client-timeout) [ $# -ge 2 ] || mgw_die E_CONFIG 78 "--client-timeout needs a value"; MGW_CLIENT_TIMEOUT=$2; shift 2 ;;
      --env) [ $# -ge 2 ] || mgw_die E_CONFIG 78 "--env needs NAME=VALUE"; mgw_add_site_env "$2"; shift 2 ;;
      --rsync) [ $# -ge 2 ] || mgw_die E_CONFIG 78 "--rsync needs a value"; MGW_RSYNC=$2; shift 2 ;;
      # Obsolete (downloads are confined on any rsync >= 3.1.0, mgw_serve_download): still accepted
      # so that an authorized_keys line written for an older gateway keeps working.
      --allow-unconfined-rsync) shift ;;
      # Refuse every request whose authentication sshd did not expose (mgw_check_scope).
      --enforce-job-scope) MGW_ENFORCE_SCOPE=1; shift ;;
      --hash-uploads) MGW_HASH_UPLOADS=1; shift ;;
      --scheduler) [ $# -ge 2 ] || mgw_die E_CONFIG 78 "--scheduler needs slurm, sge, pbs or none"; MGW_SCHEDULER=$2; shift 2 ;;
      --scheduler-bin) [ $# -ge 2 ] || mgw_die E_CONFIG 78 "--scheduler-bin needs a directory"; MGW_SCHED_BIN=$2; shift 2 ;;
      --scheduler-args) [ $# -ge 2 ] || mgw_die E_CONFIG 78 "--scheduler-args needs a value"; MGW_SCHED_ARGS=$2; shift 2 ;;
      --max-cpus) [ $# -ge 2 ] || mgw_die E_CONFIG 78 "--max-cpus needs a value"; MGW_MAX_CPUS=$2; shift 2 ;;
      --max-memory-mb) [ $# -ge 2 ] || mgw_die E_CONFIG 78 "--max-memory-mb needs a value"; MGW_MAX_MEMORY_MB=$2; shift 2 ;;
      --max-walltime-min) [ $# -ge 2 ] || mgw_die E_CONFIG 78 "--max-walltime-min needs a value"; MGW_MAX_WALLTIME_MIN=$2; shift 2 ;;
      # The scheduler's side of a job (mgw_sched_run_job): reached only from the batch script this
      # gateway wrote, never from SSH_ORIGINAL_COMMAND.
      --run-sched) MGW_MODE=sched; break ;;
      # The detached job runner: reached only through this script's own argv, never from
      # SSH_ORIGINAL_COMMAND (sshd builds argv from authorized_keys alone).
      --run-job) MGW_MODE=run; break ;;
      *) mgw_die E_CONFIG 78 "unknown gateway option '$1' (check the command= in authorized_keys)" ;;
    esac
  done
  mgw_check_number "$MGW_MAX_JOBS" --max-jobs
  mgw_check_number "$MGW_MIN_FREE_MB" --min-free-mb
  mgw_check_number "$MGW_MAX_AGE_DAYS" --max-age-days
  mgw_check_number "$MGW_GRACE" --grace
  mgw_check_number "$MGW_MIN_FREE_INODES" --min-free-inodes
  mgw_check_number "$MGW_MAX_JOB_MB" --max-job-mb
  mgw_check_number "$MGW_MAX_JOB_FILES" --max-job-files
  mgw_check_number "$MGW_CLIENT_TIMEOUT" --client-timeout
  [ "$MGW_CLIENT_TIMEOUT" -gt 0 ] || mgw_die E_CONFIG 78 "--client-timeout must be at least 1 second"
  case $MGW_KEY_NAME in
    '' | *[!A-Za-z0-9._@-]*) mgw_die E_CONFIG 78 "--key-name may hold only letters, digits and ._@-" ;;
  esac
  case $MGW_EXPORT in
    *[!A-Za-z0-9._*?/,+=@%-]*) mgw_die E_CONFIG 78 "--export holds a character outside A-Za-z0-9._*?/,+=@%-" ;;
  esac
  mgw_sched_check_options
}

# --program PATH: the default program; --program NAME=PATH (repeatable): a program a client may
# choose by name (startx/runx). Names are [A-Za-z0-9._-], 1-64 bytes.
mgw_add_program() {
  case $1 in
    *=*)
      mgw_pname=${1%%=*}
      case $mgw_pname in
        '' | *[!A-Za-z0-9._-]*) mgw_die E_CONFIG 78 "--program NAME=PATH: NAME may hold only letters, digits and ._-" ;;
      esac
      [ ${#mgw_pname} -le 64 ] || mgw_die E_CONFIG 78 "--program NAME=PATH: NAME longer than 64 bytes"
      case $MGW_NL$MGW_PROGRAMS in
        *"$MGW_NL$mgw_pname="*) mgw_die E_CONFIG 78 "--program $mgw_pname=... is given twice" ;;
      esac
      case ${1#*=} in
        *"$MGW_NL"*) mgw_die E_CONFIG 78 "--program PATH may not hold a newline" ;;
      esac
      MGW_PROGRAMS=$MGW_PROGRAMS$1$MGW_NL ;;
    *) MGW_PROGRAM=$1 ;;
  esac
}

# --allow-env NAME[,NAME]: variables a client may set for the program (runx/startx `env` lines).
mgw_add_allow_env() {
  mgw_rest=$1
  while [ -n "$mgw_rest" ]; do
    mgw_n=${mgw_rest%%,*}
    case $mgw_rest in *,*) mgw_rest=${mgw_rest#*,} ;; *) mgw_rest= ;; esac
    case $mgw_n in
      '' | [0-9]* | *[!A-Za-z0-9_]*) mgw_die E_CONFIG 78 "--allow-env takes NAME[,NAME] with NAMEs of letters, digits and _" ;;
      # Names that make the loader, a shell or an interpreter run code, or that the gateway sets:
      # a client that may set one runs what it likes (BASH_ENV='$(id)' for a bash program).
      LD_* | BASH_ENV | ENV | BASH_FUNC_* | IFS | SHELLOPTS | BASHOPTS | PS4 | PATH | CDPATH | GCONV_PATH | \
        LOCPATH | NLSPATH | HOSTALIASES | PYTHON* | PERL5* | PERLLIB | RUBYOPT | RUBYLIB | NODE_OPTIONS | \
        NODE_PATH | JAVA_TOOL_OPTIONS | _JAVA_OPTIONS | JDK_JAVA_OPTIONS | MINT_JOB_*)
        mgw_die E_CONFIG 78 "--allow-env $mgw_n would let a client run code of its choosing; set it with --env instead" ;;
    esac
    MGW_ALLOW_ENV=$MGW_ALLOW_ENV$mgw_n,
  done
}

# --env NAME=VALUE (repeatable): a variable the site gives every program. The value may hold any
# byte but a newline (the list is newline-separated); it reaches the program as one argv element of
# env(1), never through a shell.
mgw_add_site_env() {
  case ${1%%=*} in
    '' | [0-9]* | *[!A-Za-z0-9_]*) mgw_die E_CONFIG 78 "--env takes NAME=VALUE with NAME of letters, digits and _" ;;
  esac
  case $1 in
    *=*) ;;
    *) mgw_die E_CONFIG 78 "--env takes NAME=VALUE" ;;
  esac
  case $1 in
    *"$MGW_NL"*) mgw_die E_CONFIG 78 "--env values may not hold a newline" ;;
  esac
  MGW_SITE_ENV=$MGW_SITE_ENV$1$MGW_NL
}

mgw_check_number() {
  case $1 in
    '' | *[!0-9]* | 0?*) mgw_die E_CONFIG 78 "$2 must be a whole number without leading zeros, got '$1'" ;;
  esac
  [ ${#1} -le 9 ] || mgw_die E_CONFIG 78 "$2 is too large"
}

# The job root must be a real directory of ours that nobody else can write, and it must not be, or
# hold, the home directory or ~/.ssh: otherwise an upload could replace authorized_keys.
mgw_check_root() {
  case $MGW_ROOT in
    /*) ;;
    '') mgw_die E_CONFIG 78 "--root is required" ;;
    *) mgw_die E_CONFIG 78 "--root must be an absolute path" ;;
  esac
  [ -d "$MGW_ROOT" ] || mgw_die E_CONFIG 78 "job root $MGW_ROOT does not exist (create it with mkdir -m 700)"
  [ ! -L "$MGW_ROOT" ] || mgw_die E_CONFIG 78 "job root $MGW_ROOT is a symbolic link; name the real directory"
  MGW_ROOT=$(cd -P -- "$MGW_ROOT" && pwd -P) || mgw_die E_CONFIG 78 "cannot enter job root"
  mgw_home=
  if [ -n "${HOME:-}" ] && [ -d "$HOME" ]; then
    mgw_home=$(cd -P -- "$HOME" && pwd -P) || mgw_home=
  fi
  [ "$MGW_ROOT" != / ] || mgw_die E_CONFIG 78 "job root must not be /"
  if [ -n "$mgw_home" ]; then
    [ "$MGW_ROOT" != "$mgw_home" ] || mgw_die E_CONFIG 78 "job root must not be the home directory"
    case $mgw_home/.ssh/ in
      "$MGW_ROOT"/*) mgw_die E_CONFIG 78 "job root must not contain ~/.ssh" ;;
    esac
    case $MGW_ROOT/ in
      "$mgw_home"/.ssh/*) mgw_die E_CONFIG 78 "job root must not be inside ~/.ssh" ;;
    esac
  fi
  mgw_need stat
  # %A is ls-style: position 6 is group write, 9 is other write.
  mgw_mode=$("$mgw_found" -c '%A' -- "$MGW_ROOT") || mgw_die E_CONFIG 78 "cannot stat job root"
  case $mgw_mode in
    ?????w???? | ????????w?) mgw_die E_CONFIG 78 "job root $MGW_ROOT is writable by group or others (chmod 700 it)" ;;
  esac
  # -O (owned by the effective uid) is not POSIX but dash, bash and busybox sh all have it, and it
  # saves running id(1) on every request.
  [ -O "$MGW_ROOT" ] || mgw_die E_CONFIG 78 "job root $MGW_ROOT is not owned by this account"
}

mgw_check_program() {
  case $MGW_PROGRAM in
    /*) ;;
    '') mgw_die E_CONFIG 78 "--program is required to start jobs" ;;
    *) mgw_die E_CONFIG 78 "--program must be an absolute path" ;;
  esac
  # env(1) would take a path holding '=' for one more variable.
  case $MGW_PROGRAM in *=*) mgw_die E_CONFIG 78 "--program must not hold '='" ;; esac
  { [ -f "$MGW_PROGRAM" ] && [ -x "$MGW_PROGRAM" ]; } ||
    mgw_die E_CONFIG 78 "program $MGW_PROGRAM is missing or not executable"
}

# ---------------------------------------------------------------------------------------------------
# Audit: every request is recorded before it is carried out, and what came of it after. Lines are
#   TIME prev=H key=K from=ADDR req=ID verb=V job=J decision=accepted|already-started [inputs=D|outputs=D]
#   TIME prev=H key=K from=ADDR req=ID verb=V job=J outcome=ok|failed|error:E_CODE|signal:NAME exit=N
#   TIME prev=H key=K from=ADDR req=ID verb=V job=J decision=refused:E_CODE exit=N
#   TIME prev=H key=K from=ADDR req=ID verb=program job=J outcome=ok|failed|signal:NAME|cancelled exit=N
# (prev=: the chain, mgw_audit_chain; inputs=/outputs=: the digest of the manifest a start verified
# or a get/take served, mgw_manifest.)
# Two lines per accepted request, joined by req=, because one line cannot be both: it must be on
# disk before the request acts (so a request that cannot be audited is refused, mgw_audit_accepted:
# with the disk full, a gateway that went on would act unrecorded), and the outcome exists only
# after. (The one line at acceptance used to say `exit=0` there, which the request's end could
# contradict.) A refusal before acceptance is its own outcome: one line. The program line is the
# runner's, when it sees the program end (req= is the start's), or cancel's when it had to KILL a
# runner that could not write it (req= is the cancel's, exit=-). An accepted request with no
# outcome line was killed (SIGKILL) or could not write it. Every line is whole or absent: writers take an exclusive flock on the log, append the
# line in one printf, and if that write failed part way (ENOSPC after a partial block: measured on a
# full tmpfs, dash and bash both report it, and leave the first bytes of the line behind) cut the
# log back to its last newline, so no line is ever glued to the next. The root is ours and closed to
# others, and the log is refused if it has become a symlink, so a line cannot be steered elsewhere.

# mgw_audit EVENT [program]: EVENT is the line's tail (decision=... or outcome=... exit=N); with
# `program` the line is the program's (verb=program). Returns non-zero when the line could not be
# written whole.
mgw_audit() {
  { [ -n "${MGW_ROOT:-}" ] && [ -d "$MGW_ROOT" ]; } || return 0
  mgw_log=$MGW_ROOT/.mint-gateway-audit.log
  [ ! -L "$mgw_log" ] || return 1
  mgw_which flock || return 1
  mgw_flock=$mgw_found
  mgw_client=${SSH_CONNECTION%% *}
  [ -n "$mgw_client" ] || mgw_client=-
  mgw_when=-
  if mgw_which date; then mgw_when=$("$mgw_found" -u +%Y-%m-%dT%H:%M:%SZ); fi
  # A refused verb is the client's token (up to 4 KiB): only known verbs are written as they came.
  # `program` is not a verb a client can send: only our own calls write it.
  case " $MGW_VERBS " in
    *" ${MGW_VERB:--} "*) mgw_verb=$MGW_VERB ;;
    *) mgw_verb=${MGW_VERB:+?}; mgw_verb=${mgw_verb:--} ;;
  esac
  [ "${2:-}" != program ] || mgw_verb=program
  mgw_which tail || return 1
  mgw_atail=$mgw_found
  mgw_which sha256sum || return 1
  mgw_asum=$mgw_found
  mgw_line_tail="key=$MGW_KEY_NAME from=$mgw_client req=$MGW_REQ verb=$mgw_verb job=${MGW_JOB:--} $1"
  { mgw_audit_append; } 2>/dev/null 9>>"$mgw_log"
}

# fd 9 is the log, opened for appending. Under the lock, the line is chained to the log's last line
# (mgw_audit_chain), so no other writer can come between the hash and the append.
mgw_audit_append() {
  "$mgw_flock" -w 10 9 || return 1
  mgw_audit_chain || return 1
  mgw_line="$mgw_when prev=$mgw_prev $mgw_line_tail"
  if printf '%s\n' "$mgw_line" >&9; then
    mgw_audit_last=$mgw_line
    return 0
  fi
  # The partial line is everything after the log's last newline (all lines before it are whole,
  # and we hold the lock): look at no more bytes than our line could have left.
  mgw_which truncate || return 1
  mgw_truncate=$mgw_found
  mgw_which tail || return 1
  # The x keeps $(...) from stripping a trailing newline: a write that left nothing must cut nothing.
  mgw_partial=$("$mgw_found" -c $((${#mgw_line} + 1)) -- "$mgw_log" && printf x) || return 1
  mgw_partial=${mgw_partial%x}
  mgw_partial=${mgw_partial##*"$MGW_NL"}
  [ -z "$mgw_partial" ] || "$mgw_truncate" -s -"${#mgw_partial}" -- "$mgw_log"
  return 1
}

# The audit chain: every line's second field is prev=SHA256 of the line before it, newline included
# (`tail -n 1 | sha256sum`); the first line of a log chains to the hash of nothing
# (e3b0c442...b855, sha256 of the empty string), which is what an empty log gives. An edited,
# deleted or inserted line then breaks the chain at the line after it, and `mint-gateway
# verify-audit` names that line (src/site/audit-chain.ts); a rewrite of the whole tail from the edit
# on is caught by a chain head kept elsewhere (the client's job record: take reports the head).
# Sets mgw_prev; fails (and the request is refused, mgw_audit_accepted) when the hash cannot be made.
mgw_audit_chain() {
  mgw_prev=$("$mgw_atail" -n 1 -- "$mgw_log" | "$mgw_asum") || return 1
  mgw_prev=${mgw_prev%% *}
  case $mgw_prev in
    *[!0-9a-f]*) return 1 ;;
  esac
  [ ${#mgw_prev} -eq 64 ]
}

# The request is about to be carried out: audit it, or refuse it. From here on its end is an
# outcome line (mgw_at_exit).
mgw_audit_accepted() {
  mgw_audit "decision=$1" || mgw_die E_LIMIT 69 "the audit log under the job root cannot be written (disk full?); request refused"
  mgw_accepted
}

# Marks the request accepted, keeping its job for the outcome line: list, and start's capacity
# count and sweep, walk MGW_JOB over other jobs.
mgw_accepted() {
  MGW_ACCEPTED=${MGW_JOB:--}
}

# ---------------------------------------------------------------------------------------------------
# The command. Accepted shapes of SSH_ORIGINAL_COMMAND (tokens separated by exactly one space):
#   mint-gw probe
#   mint-gw list   [long]            one line per job: JOB STATE [exit=N]; long adds kb=N age=S
#   mint-gw put    JOB CAPS          rsync upload into the job's work dir
#   mint-gw putx   JOB               a small upload as one inline stream on stdin (mgw_verb_putx)
#   mint-gw start  JOB [ARG...]      run the program detached (idempotent)
#   mint-gw run    JOB [ARG...]      start, then follow the log from byte 0 (one round trip less)
#   mint-gw startx JOB               start, the request on stdin (see mgw_read_request)
#   mint-gw runx   JOB               run, the request on stdin
#   mint-gw jobx   JOB LENGTH        putx and runx in one request: the request, then the inputs (mgw_verb_jobx)
#   mint-gw status JOB
#   mint-gw logs   JOB OFFSET        log bytes from OFFSET, following until the job ends
#   mint-gw get    JOB [CAPS]        rsync download of the job's work dir (rsync's daemon mode;
#                                    CAPS, from the form before it, is checked and unused)
#   mint-gw take   JOB [CAPS]        get; then, if the client answers `remove`, remove the job
#   mint-gw takex  JOB               take, the files as one inline stream on stdout (small results)
#   mint-gw cancel JOB
#   mint-gw rm     JOB
# JOB is a lowercase UUID; CAPS is rsync's capability string (the part after -e in its server
# flags, e.g. .iLsfxCIvu); OFFSET is decimal; an ARG is 1-255 bytes of [A-Za-z0-9._,:=+@%-].

mgw_read_command() {
  if [ -z "${SSH_ORIGINAL_COMMAND+set}" ] || [ -z "$SSH_ORIGINAL_COMMAND" ]; then
    mgw_die E_NOCOMMAND 65 "this key runs only mint-gw commands; interactive shells are refused"
  fi
  mgw_cmd=$SSH_ORIGINAL_COMMAND
  unset SSH_ORIGINAL_COMMAND
  case $mgw_cmd in
    # Anchored at the start: a subsystem arrives as its command (a path or internal-sftp), while a
    # mint-gw command that merely contains the word is judged as a command below.
    /*sftp-server | /*sftp-server\ * | sftp-server | sftp-server\ * | internal-sftp | internal-sftp\ * | 'scp '* | /*/scp\ *)
      mgw_die E_SUBSYSTEM 66 "subsystems (sftp, scp) are refused for this key" ;;
  esac
  [ ${#mgw_cmd} -le $MGW_MAX_COMMAND ] || mgw_die E_USAGE 64 "command longer than $MGW_MAX_COMMAND bytes"
  # LC_ALL=C makes each byte one character, so anything outside ASCII fails here too.
  case $mgw_cmd in
    *[!A-Za-z0-9\ ._,:=+@%-]*) mgw_die E_USAGE 64 "command holds a byte outside [A-Za-z0-9 ._,:=+@%-]" ;;
    ' '* | *' ' | *'  '*) mgw_die E_USAGE 64 "tokens must be separated by exactly one space" ;;
  esac
  # Safe to split: globbing is off and the byte check above left no quote, glob or newline.
  set -f
  # shellcheck disable=SC2086
  set -- $mgw_cmd
  [ "$1" = mint-gw ] || mgw_die E_USAGE 64 "unknown command '$1' (this key runs only mint-gw)"
  shift
  [ $# -ge 1 ] || mgw_die E_USAGE 64 "missing verb"
  MGW_VERB=$1
  shift
  MGW_ARGC=$#
  mgw_argv="$*"
}

# The one check stage: every token of the request, validated once, by verb.
mgw_check_request() {
  MGW_PROG_ARGS=
  MGW_LIST_LONG=0
  # Safe to split: globbing is off and the byte check left no quote, glob or newline.
  # shellcheck disable=SC2086
  set -- $mgw_argv
  case $MGW_VERB in
    probe) mgw_expect_args 0 0 "no arguments" ;;
    list)
      mgw_expect_args 0 1 "no arguments, or long"
      [ "$MGW_ARGC" = 0 ] || [ "$1" = long ] || mgw_die E_USAGE 64 "'list' takes no arguments, or long"
      MGW_LIST_LONG=$MGW_ARGC ;;
    put)
      mgw_expect_args 2 2 "JOB CAPS"
      mgw_check_job "$1"
      mgw_check_caps "$2" ;;
    putx | takex)
      mgw_expect_args 1 1 "JOB (the files come on stdin, or go on stdout, as an inline stream)"
      mgw_check_job "$1" ;;
    get | take)
      # rsync's daemon mode: the client's capability letters travel inside rsync's own protocol.
      # A CAPS token (the form before daemon mode) is still checked, then unused.
      mgw_expect_args 1 2 "JOB [CAPS]"
      mgw_check_job "$1"
      [ $# -lt 2 ] || mgw_check_caps "$2" ;;
    startx | runx)
      mgw_expect_args 1 1 "JOB (the program, its arguments and variables come on stdin)"
      mgw_check_job "$1"
      mgw_read_request ;;
    jobx)
      mgw_expect_args 2 2 "JOB LENGTH (the request, LENGTH bytes, then the inputs come on stdin)"
      mgw_check_job "$1"
      case $2 in
        0 | [1-9] | [1-9][0-9] | [1-9][0-9][0-9] | [1-9][0-9][0-9][0-9] | [1-9][0-9][0-9][0-9][0-9] | [1-9][0-9][0-9][0-9][0-9][0-9]) ;;
        *) mgw_die E_USAGE 64 "a jobx request's length is a decimal byte count under 1 MiB" ;;
      esac
      [ "$2" -le 1048576 ] || mgw_die E_USAGE 64 "a jobx request's length is a decimal byte count under 1 MiB"
      mgw_read_job_request "$2" ;;
    start | run)
      mgw_expect_args 1 $((MGW_MAX_ARGS + 1)) "JOB [ARG...] (at most $MGW_MAX_ARGS arguments)"
      mgw_check_job "$1"
      shift
      for mgw_a in "$@"; do mgw_check_prog_arg "$mgw_a"; done
      MGW_PROG_ARGS=$* ;;
    status | cancel | rm)
      mgw_expect_args 1 1 "JOB"
      mgw_check_job "$1" ;;
    logs)
      mgw_expect_args 2 2 "JOB OFFSET"
      mgw_check_job "$1"
      mgw_check_offset "$2" ;;
    *) mgw_die E_USAGE 64 "unknown verb '$MGW_VERB'" ;;
  esac
}

# startx/runx: the request comes on stdin, ended by the client's end of input, as ASCII lines
#   program HEX     the site's program to run, by name (--program NAME=PATH); at most one
#   arg HEX         one argument, in order; at most 64
#   env HEX         NAME=VALUE for a name the site allows (--allow-env); at most 64
# where HEX is the value's bytes in lowercase hex: 1-4096 bytes, no NUL, so any UTF-8 string (a
# path with / and spaces, Japanese) reaches the program byte for byte, and the only bytes this
# script reads are [a-z0-9 ] and newlines, which it checks before it decodes anything. At most
# 1 MiB, read for at most --client-timeout seconds. Sets MGW_REQUEST (the checked lines),
# MGW_REQUEST_PROGRAM (the decoded name, or empty) and MGW_CLIENT_ENV (the decoded, allowed
# NAME=VALUE lines).
mgw_read_request() {
  mgw_read_stdin 1048577
  [ ${#MGW_REQUEST} -le 1048576 ] || mgw_die E_USAGE 64 "the request on stdin is larger than 1 MiB"
  case $MGW_REQUEST in
    *"$(printf '\001')") mgw_die E_USAGE 64 "the request on stdin did not end within $MGW_CLIENT_TIMEOUT s (or ended with a control byte)" ;;
  esac
  mgw_check_request_lines
}

# jobx JOB LENGTH: the gateway greets with `mint-job 1` and a newline on stdout; then the stream on
# stdin is the request as runx reads it (mgw_read_request), LENGTH bytes, then the job's inputs as
# an inline stream (mgw_verb_putx). Only the request is read here, exactly (GNU head -c reads no
# byte past its count), within --client-timeout seconds; the inputs stay on stdin for the verb.
# The request must carry the inputs' manifest.
mgw_read_job_request() {
  # The greeting comes first on stdout, and the client sends nothing until it has read it there as
  # the stream's first bytes: a login shell that prints (a banner, a `stty` error) is found before
  # any input lands or any program runs, as rsync's own greeting finds it for put.
  printf 'mint-job 1\n'
  mgw_read_stdin "$1"
  case $MGW_REQUEST in
    *"$(printf '\001')"*) mgw_die E_USAGE 64 "the request on stdin did not come whole within $MGW_CLIENT_TIMEOUT s (or held a control byte)" ;;
  esac
  [ ${#MGW_REQUEST} -eq "$1" ] || mgw_die E_USAGE 64 "the request on stdin is shorter than its stated $1 bytes"
  mgw_check_request_lines
  [ -n "$MGW_REQUEST_MANIFEST" ] || mgw_die E_USAGE 64 "a jobx request carries the manifest of its inputs"
}

# mgw_read_stdin COUNT: MGW_REQUEST is at most COUNT bytes of stdin (GNU head -c reads no byte past
# them), read for at most --client-timeout seconds. A NUL would vanish in the shell's variable: it
# becomes \001, which no request check accepts. A client silent for --client-timeout seconds ends
# the read with \001 too (timeout's status is lost in the pipe), and so ends the request with it.
# The x keeps $(...) from dropping trailing newlines before the size is measured (found by review: a
# body cut at 1 MiB inside a run of newlines passed, its tail unread).
mgw_read_stdin() {
  mgw_need head
  mgw_head=$mgw_found
  mgw_need tr
  mgw_tr=$mgw_found
  mgw_need timeout
  MGW_REQUEST=$({ "$mgw_found" "$MGW_CLIENT_TIMEOUT" "$mgw_head" -c "$1" || printf '\001'; } | "$mgw_tr" '\000' '\001'; printf x)
  MGW_REQUEST=${MGW_REQUEST%x}
}

# The request's lines (MGW_REQUEST), checked and decoded: see mgw_read_request.
mgw_check_request_lines() {
  MGW_REQUEST_PROGRAM=
  MGW_REQUEST_MANIFEST=
  mgw_nargs=0
  mgw_nenv=0
  mgw_ifs=$IFS
  IFS=$MGW_NL
  for mgw_l in $MGW_REQUEST; do
    IFS=$mgw_ifs
    case $mgw_l in
      'program '* | 'arg '* | 'env '*) ;;
      # Resources for a scheduler (mgw_sched_resource): decimal numbers, hex-coded like the rest.
      'cpus '* | 'memory_mb '* | 'walltime_min '* | 'nodes '*) ;;
      # The SHA-256 of the client's manifest of the inputs (mgw_check_inputs), at most one.
      'manifest '*) ;;
      *) mgw_die E_USAGE 64 "request lines are 'program HEX', 'arg HEX' or 'env HEX'" ;;
    esac
    mgw_hex=${mgw_l#* }
    case $mgw_hex in
      '' | *[!0-9a-f]*) mgw_die E_USAGE 64 "a request value must be lowercase hex" ;;
    esac
    [ $((${#mgw_hex} % 2)) -eq 0 ] || mgw_die E_USAGE 64 "a request value must be whole bytes of hex"
    [ ${#mgw_hex} -le 8192 ] || mgw_die E_USAGE 64 "a request value is longer than 4096 bytes"
    case $mgw_l in
      'arg '*)
        mgw_nargs=$((mgw_nargs + 1))
        [ "$mgw_nargs" -le "$MGW_MAX_ARGS" ] || mgw_die E_USAGE 64 "more than $MGW_MAX_ARGS program arguments" ;;
      'env '*)
        mgw_nenv=$((mgw_nenv + 1))
        [ "$mgw_nenv" -le 64 ] || mgw_die E_USAGE 64 "more than 64 variables" ;;
    esac
    IFS=$MGW_NL
  done
  IFS=$mgw_ifs
  # Every line is now `KIND HEX` with checked hex: decoded in one awk (mgw_hex_escapes).
  mgw_need awk
  MGW_REQUEST=$(printf '%s\n' "$MGW_REQUEST" | mgw_hex_escapes) || mgw_die E_INTERNAL 70 "could not decode the request"
  IFS=$MGW_NL
  for mgw_l in $MGW_REQUEST; do
    IFS=$mgw_ifs
    [ "${mgw_l#* }" != NUL ] || mgw_die E_USAGE 64 "a request value may not hold a NUL byte"
    case $mgw_l in
      'program '*)
        mgw_decode "${mgw_l#* }"
        [ -z "$MGW_REQUEST_PROGRAM" ] || mgw_die E_USAGE 64 "the request names more than one program"
        case $mgw_decoded in
          '' | *[!A-Za-z0-9._-]*) mgw_die E_USAGE 64 "a program name holds only letters, digits and ._-" ;;
        esac
        MGW_REQUEST_PROGRAM=$mgw_decoded ;;
      'env '*)
        mgw_decode "${mgw_l#* }"
        case $mgw_decoded in
          *"$MGW_NL"*) mgw_die E_USAGE 64 "a variable's value may not hold a newline" ;;
          [A-Za-z_]*=*) ;;
          *) mgw_die E_USAGE 64 "a variable must be NAME=VALUE" ;;
        esac
        mgw_n=${mgw_decoded%%=*}
        case $mgw_n in
          *[!A-Za-z0-9_]*) mgw_die E_USAGE 64 "a variable must be NAME=VALUE" ;;
        esac
        case $MGW_ALLOW_ENV in
          *",$mgw_n,"*) ;;
          *) mgw_die E_USAGE 64 "the site does not let a client set $mgw_n (its --allow-env: $(mgw_allow_env_names))" ;;
        esac
        MGW_CLIENT_ENV=$MGW_CLIENT_ENV$mgw_decoded$MGW_NL ;;
      'cpus '* | 'memory_mb '* | 'walltime_min '* | 'nodes '*)
        mgw_decode "${mgw_l#* }"
        mgw_sched_resource "${mgw_l%% *}" "$mgw_decoded" ;;
      'manifest '*)
        mgw_decode "${mgw_l#* }"
        [ -z "$MGW_REQUEST_MANIFEST" ] || mgw_die E_USAGE 64 "the request holds more than one manifest"
        case $mgw_decoded in
          *[!0-9a-f]*) mgw_die E_USAGE 64 "a manifest is the 64 lowercase hex digits of a SHA-256" ;;
        esac
        [ ${#mgw_decoded} -eq 64 ] || mgw_die E_USAGE 64 "a manifest is the 64 lowercase hex digits of a SHA-256"
        MGW_REQUEST_MANIFEST=$mgw_decoded ;;
    esac
    IFS=$MGW_NL
  done
  IFS=$mgw_ifs
  [ -z "$MGW_REQUEST_PROGRAM" ] || mgw_choose_program "$MGW_REQUEST_PROGRAM"
  mgw_sched_check_resources
}

# Lines on stdin whose last field is checked lowercase hex (whole bytes) come out with that field
# as printf's octal escapes for its bytes (mgw_decode), or as NUL when it holds a NUL byte. One awk
# for all of them, in linear time: the shell's own string slicing is quadratic (bash took minutes
# for 64 arguments of 4 KiB).
mgw_hex_escapes() {
  mgw_need awk
  # shellcheck disable=SC2016
  "$mgw_found" '
    BEGIN { digits = "0123456789abcdef" }
    NF >= 2 {
      out = ""; nul = 0
      for (i = 1; i < length($NF); i += 2) {
        n = (index(digits, substr($NF, i, 1)) - 1) * 16 + index(digits, substr($NF, i + 1, 1)) - 1
        if (n == 0) nul = 1
        out = out sprintf("\\%03o", n)
      }
      $NF = nul ? "NUL" : out
      print
    }'
}

# Sets mgw_decoded to the bytes FORMAT's octal escapes stand for (one printf; the x keeps $(...)
# from dropping trailing newlines).
mgw_decode() {
  # shellcheck disable=SC2059
  mgw_decoded=$(printf "$1"; printf x)
  mgw_decoded=${mgw_decoded%x}
}

# Sets MGW_PROGRAM to the path of the site's program NAME, or refuses an unknown name.
mgw_choose_program() {
  mgw_ifs=$IFS
  IFS=$MGW_NL
  for mgw_p in $MGW_PROGRAMS; do
    if [ "${mgw_p%%=*}" = "$1" ]; then
      IFS=$mgw_ifs
      MGW_PROGRAM=${mgw_p#*=}
      return 0
    fi
  done
  IFS=$mgw_ifs
  mgw_die E_USAGE 64 "unknown program '$1' (this site has: $(mgw_program_names))"
}

mgw_program_names() {
  mgw_names=
  mgw_ifs=$IFS
  IFS=$MGW_NL
  for mgw_p in $MGW_PROGRAMS; do mgw_names=$mgw_names${mgw_names:+,}${mgw_p%%=*}; done
  IFS=$mgw_ifs
  printf '%s' "$mgw_names"
}

mgw_allow_env_names() {
  mgw_names=${MGW_ALLOW_ENV#,}
  printf '%s' "${mgw_names%,}"
}

mgw_expect_args() {
  { [ "$MGW_ARGC" -ge "$1" ] && [ "$MGW_ARGC" -le "$2" ]; } ||
    mgw_die E_USAGE 64 "'$MGW_VERB' takes $3"
}

mgw_check_job() {
  mgw_is_job_name "$1" || mgw_die E_USAGE 64 "job id must be a lowercase UUID"
  MGW_JOB=$1
  MGW_JOBDIR=$MGW_ROOT/$1
  # The program's cwd is named by the job, as MInt's own /tmp/<uuid> is: real helpers derive their
  # directories from its basename. The gateway's state files sit beside it, never in it.
  MGW_WORK=$MGW_JOBDIR/$1
  MGW_LOGFILE=$MGW_JOBDIR/remote_program_exec.log
}

# rsync's capability string as rrsync accepts it: optional digits, a dot, letters.
mgw_check_caps() {
  case $1 in
    .* | [0-9]*.*) ;;
    *) mgw_die E_USAGE 64 "rsync capabilities must look like .iLsfxCIvu" ;;
  esac
  mgw_caps_tail=${1#*.}
  case $1 in
    *[!0-9.A-Za-z]* | *.*.*) mgw_die E_USAGE 64 "rsync capabilities must look like .iLsfxCIvu" ;;
  esac
  case ${1%%.*} in
    *[!0-9]*) mgw_die E_USAGE 64 "rsync capabilities must look like .iLsfxCIvu" ;;
  esac
  case $mgw_caps_tail in
    *[!A-Za-z]*) mgw_die E_USAGE 64 "rsync capabilities must look like .iLsfxCIvu" ;;
  esac
  [ ${#1} -le 32 ] || mgw_die E_USAGE 64 "rsync capabilities too long"
  MGW_CAPS=$1
}

mgw_check_offset() {
  # No leading zero: shell arithmetic would read 010 as octal 8, and 08 would abort the shell.
  case $1 in
    '' | *[!0-9]* | 0?*) mgw_die E_USAGE 64 "log offset must be a decimal byte count" ;;
  esac
  [ ${#1} -le 15 ] || mgw_die E_USAGE 64 "log offset too large"
  MGW_OFFSET=$1
}

mgw_check_prog_arg() {
  case $1 in
    *[!A-Za-z0-9._,:=+@%-]*) mgw_die E_USAGE 64 "program argument holds a byte outside [A-Za-z0-9._,:=+@%-]" ;;
  esac
  [ ${#1} -le 255 ] || mgw_die E_USAGE 64 "program argument longer than 255 bytes"
}

# ---------------------------------------------------------------------------------------------------
# Per-job certificates (issue 17): a certificate whose key id is `mint-ssh-exec job JOB ...` (what
# runRemote's `certificate: per-job` signs, src/connection/cert-authority.ts) opens job JOB and no
# other. sshd says which key or certificate logged in only with `ExposeAuthInfo yes`: then
# $SSH_USER_AUTH names a file it wrote for this session, one line per method that succeeded, e.g.
#   publickey ssh-ed25519-cert-v01@openssh.com AAAA...
# The client cannot set or steer it: sshd sets SSH_USER_AUTH after the variables of the client's
# env requests (a forged one is overwritten; the tests send one), PermitUserEnvironment no leaves
# keys' environment= and ~/.ssh/environment out, and a name the client could set (AcceptEnv, with
# ExposeAuthInfo off) must still be sshd's kind of file, which no upload can make. Without ExposeAuthInfo the variable is
# absent and nothing is scoped, unless the site said --enforce-job-scope: then every request is
# refused (fail closed: a per-job certificate must never pass as an unscoped key). `mint-gateway
# doctor` says which of the two the site does. A scoped request may probe, and act on its job
# (every verb that names one); `list` (every job's id) and any other job are refused with E_SCOPE,
# audited like every refusal. Sets MGW_SCOPE (the job, or
# empty).

mgw_check_scope() {
  MGW_SCOPE=
  mgw_auth=${SSH_USER_AUTH:-}
  unset SSH_USER_AUTH
  if [ -z "$mgw_auth" ]; then
    [ -z "$MGW_ENFORCE_SCOPE" ] ||
      mgw_die E_CONFIG 78 "--enforce-job-scope: sshd did not say which key logged in (set ExposeAuthInfo yes in sshd_config); request refused"
    return 0
  fi
  # sshd's own file: mkstemp's /tmp/sshauth.XXXXXXXXXXXXXXX (fixed in OpenSSH's session.c since
  # 7.6, the release that brought ExposeAuthInfo), made as this account, mode 600. A client whose
  # sshd lets it set the variable (AcceptEnv, with ExposeAuthInfo off) can name only files it cannot
  # make there: an upload lands under the job root, never in /tmp.
  case $mgw_auth in
    /tmp/sshauth.[A-Za-z0-9][A-Za-z0-9][A-Za-z0-9][A-Za-z0-9][A-Za-z0-9][A-Za-z0-9][A-Za-z0-9][A-Za-z0-9][A-Za-z0-9][A-Za-z0-9][A-Za-z0-9][A-Za-z0-9][A-Za-z0-9][A-Za-z0-9][A-Za-z0-9]) ;;
    *) mgw_die E_CONFIG 78 "SSH_USER_AUTH does not name a file sshd made (/tmp/sshauth.*)" ;;
  esac
  mgw_need stat
  { [ -f "$mgw_auth" ] && [ ! -L "$mgw_auth" ] && [ -O "$mgw_auth" ] && [ -r "$mgw_auth" ] &&
    [ "$("$mgw_found" -c '%a' -- "$mgw_auth" 2>/dev/null)" = 600 ]; } ||
    mgw_die E_CONFIG 78 "SSH_USER_AUTH does not name a file sshd made (this account's, mode 600)"
  mgw_need head
  # The x keeps $(...) from dropping trailing newlines before the size is measured.
  mgw_authinfo=$("$mgw_found" -c 65537 -- "$mgw_auth" && printf x) ||
    mgw_die E_CONFIG 78 "cannot read the authentication sshd exposed (SSH_USER_AUTH)"
  mgw_authinfo=${mgw_authinfo%x}
  [ ${#mgw_authinfo} -le 65536 ] || mgw_die E_CONFIG 78 "the authentication sshd exposed is larger than 64 KiB"
  mgw_ifs=$IFS
  IFS=$MGW_NL
  for mgw_l in $mgw_authinfo; do
    IFS=$mgw_ifs
    # One `METHOD [DETAILS]` line per method that succeeded (publickey, password, ...).
    case $mgw_l in
      'publickey '*-cert-v0[0-9]@openssh.com' '*) mgw_cert_scope "${mgw_l#publickey }" ;;
      [a-z]* | '') ;;
      *) mgw_die E_CONFIG 78 "SSH_USER_AUTH holds a line that is not sshd's" ;;
    esac
    case ${mgw_l%% *} in
      *[!a-z0-9-]*) mgw_die E_CONFIG 78 "SSH_USER_AUTH holds a line that is not sshd's" ;;
    esac
    IFS=$MGW_NL
  done
  IFS=$mgw_ifs
  [ -n "$MGW_SCOPE" ] || return 0
  case $MGW_VERB in
    probe) ;;
    list) mgw_die E_SCOPE 73 "the certificate that logged in is for job $MGW_SCOPE only: it may not list jobs" ;;
    *)
      # Before the request's own checks, so that a verb whose request comes on stdin (startx, runx,
      # jobx) reads none of it: every other verb's first token is its job, only compared here (the
      # byte check has run; the check stage validates it next).
      # shellcheck disable=SC2086
      set -- $mgw_argv
      if [ "${1:-}" != "$MGW_SCOPE" ]; then
        ! mgw_is_job_name "${1:-}" || MGW_JOB=$1
        mgw_die E_SCOPE 73 "the certificate that logged in is for job $MGW_SCOPE only${MGW_JOB:+, not job $MGW_JOB}"
      fi ;;
  esac
}

# mgw_cert_scope "TYPE BASE64": the job a certificate's key id names (`mint-ssh-exec job JOB` and
# optionally a space and more), read by ssh-keygen -L (its `Key ID: "..."` line). A certificate
# whose key id cannot be read, or that names a malformed job, or a second certificate naming
# another job, refuses the request: sshd accepted it, so a per-job certificate it may be.
mgw_cert_scope() {
  case $1 in
    *[!A-Za-z0-9@.+/=\ -]*) mgw_die E_CONFIG 78 "the certificate sshd exposed holds a byte outside base64" ;;
  esac
  mgw_which ssh-keygen ||
    mgw_die E_CONFIG 78 "ssh-keygen (openssh-client) is needed to read the certificate that logged in; install it"
  mgw_keyid=$(printf '%s\n' "$1" | "$mgw_found" -L -f - 2>/dev/null) ||
    mgw_die E_CONFIG 78 "ssh-keygen -L could not read the certificate that logged in"
  case $mgw_keyid in
    *"$MGW_NL"*'Key ID: "'*) ;;
    *) mgw_die E_CONFIG 78 "ssh-keygen -L gave no key id for the certificate that logged in" ;;
  esac
  mgw_keyid=${mgw_keyid#*'Key ID: "'}
  case $mgw_keyid in
    'mint-ssh-exec job '*) ;;
    *) return 0 ;;
  esac
  mgw_keyid=${mgw_keyid#mint-ssh-exec job }
  mgw_kjob=${mgw_keyid%%[ \"]*}
  mgw_is_job_name "$mgw_kjob" ||
    mgw_die E_SCOPE 73 "the certificate that logged in names a job, but not as a lowercase UUID"
  case ${mgw_keyid#"$mgw_kjob"} in
    ' '* | '"'*) ;;
    *) mgw_die E_SCOPE 73 "the certificate that logged in names a job, but not as a lowercase UUID" ;;
  esac
  { [ -z "$MGW_SCOPE" ] || [ "$MGW_SCOPE" = "$mgw_kjob" ]; } ||
    mgw_die E_SCOPE 73 "two certificates logged in, for two jobs"
  MGW_SCOPE=$mgw_kjob
}

# ---------------------------------------------------------------------------------------------------
# Job state, all derived from files in the job dir, so any later connection can read it:
#   JOB/                       the program's cwd, named by the job id: inputs in, outputs out
#   remote_program_exec.log    the program's stdout and stderr
#   started/                   made by the first start (mkdir is the lock that makes start idempotent)
#   pid                        `PID START`: the runner's pid (also its process group and session id)
#                              and its start time, so a reused pid is never taken for the runner
#   putting.PID                `PID START` of a gateway whose upload (put) is under way
#   export.PID/                the exportable files, hard-linked, while a download serves them
#   exit                       the program's exit status, written when it ends
#   cancelled                  written by cancel

mgw_read_file() {
  mgw_value=
  { [ -f "$1" ] && [ ! -L "$1" ]; } || return 1
  IFS= read -r mgw_value <"$1" || [ -n "$mgw_value" ]
}

# Sets mgw_pstart to PID's start time in clock ticks since boot (field 22 of /proc/PID/stat, which
# never changes for a process and differs for a later process given the same pid), or to - on a
# system without /proc.
mgw_proc_start() {
  mgw_pstart=-
  [ -r /proc/self/stat ] || return 0
  mgw_pstart=
  IFS= read -r mgw_st <"/proc/$1/stat" 2>/dev/null || return 1
  # The command name in field 2 may hold spaces and parentheses: skip past its last ')'.
  mgw_st=${mgw_st##*) }
  set -f
  # shellcheck disable=SC2086
  set -- $mgw_st
  [ $# -ge 20 ] || return 1
  mgw_pstate=$1
  shift 19
  mgw_pstart=$1
}

# mgw_alive PID START: PID is alive and is the process that was recorded, not a later one given the
# same pid. A START of - (recorded where /proc was missing) can only be checked with kill -0. A
# zombie (state Z) is dead: kill -0 still finds it until its parent reaps it, and a detached
# runner's parent is whatever reaps orphans (on the machine the tests ran on, a PID 1 that reaped
# late: cancel's KILL was answered with state=running).
mgw_alive() {
  case $1 in '' | *[!0-9]*) return 1 ;; esac
  kill -0 "$1" 2>/dev/null || return 1
  [ "$2" != - ] || return 0
  mgw_proc_start "$1" || return 1
  [ -n "$2" ] && [ "$mgw_pstart" = "$2" ] && [ "$mgw_pstate" != Z ]
}

# Sets MGW_STATE to created | running | exited | cancelled | lost, MGW_EXIT, MGW_PID and MGW_PSTART.
mgw_job_state() {
  MGW_EXIT=
  MGW_PID=
  MGW_PSTART=
  MGW_SCHED_JOB=
  if [ ! -d "$MGW_JOBDIR/started" ]; then
    MGW_STATE=created
    return 0
  fi
  # A job given to a batch scheduler: its state comes from its files and the scheduler.
  if [ -f "$MGW_JOBDIR/sched" ]; then
    mgw_sched_job_state
    return 0
  fi
  if mgw_read_file "$MGW_JOBDIR/exit"; then
    MGW_EXIT=$mgw_value
    if [ -f "$MGW_JOBDIR/cancelled" ]; then MGW_STATE=cancelled; else MGW_STATE=exited; fi
    return 0
  fi
  if mgw_read_file "$MGW_JOBDIR/pid"; then
    MGW_PID=${mgw_value%% *}
    # A pid file without a start time (gateway 0.2) cannot prove who the pid is now.
    case $mgw_value in *' '*) MGW_PSTART=${mgw_value#* } ;; esac
    if mgw_alive "$MGW_PID" "$MGW_PSTART"; then
      MGW_STATE=running
    elif [ -f "$MGW_JOBDIR/cancelled" ]; then
      MGW_STATE=cancelled
    elif mgw_read_file "$MGW_JOBDIR/exit"; then
      # It ended between the two looks.
      MGW_EXIT=$mgw_value
      MGW_STATE=exited
    else
      MGW_STATE=lost
    fi
    return 0
  fi
  # started/ and `cancelled` but no pid: cancelled before it ever started.
  if [ -f "$MGW_JOBDIR/cancelled" ]; then
    MGW_STATE=cancelled
    return 0
  fi
  # started/ exists but no pid: start is in its first milliseconds, or it died before writing one.
  MGW_STATE=running
  if mgw_which stat && mgw_started_at=$("$mgw_found" -c %Y -- "$MGW_JOBDIR/started") && mgw_which date; then
    [ $(($("$mgw_found" +%s) - mgw_started_at)) -lt 10 ] || MGW_STATE=lost
  fi
}

mgw_require_job() {
  { [ -d "$MGW_JOBDIR" ] && [ ! -L "$MGW_JOBDIR" ]; } || mgw_die E_NOJOB 67 "no job $MGW_JOB"
}

# One exclusive lock over the job root serialises every step that reads a job's state and then
# changes it (start, rm, take's removal, cancel, the sweep, put's set-up). Without it an rm that had
# seen `created` removed the inputs of a program that a start launched in between, which then ran
# unseen and uncancellable (found by review). Sections are short; fd 8 is closed for every child
# that outlives one (flock belongs to the open file, which a child would keep).
mgw_lock() {
  { command exec 8>>"$MGW_ROOT/.mint-gateway.lock"; } 2>/dev/null ||
    mgw_die E_LIMIT 69 "cannot open the job root's lock file (disk or inodes full?)"
  "$MGW_FLOCK" -w 60 8 || mgw_die E_INTERNAL 70 "the job root stayed locked for 60 s"
}

mgw_unlock() {
  exec 8>&-
}

# Under the lock, a job leaves the root at once, renamed to ROOT/.trash.PID.START.N (no job name,
# so no verb sees it); mgw_empty_trash deletes it after the lock is released.
mgw_discard() {
  mgw_trash_n=$((${mgw_trash_n:-0} + 1))
  [ -n "${mgw_self_start:-}" ] || { mgw_proc_start $$; mgw_self_start=$mgw_pstart; }
  "$MGW_MV" -- "$1" "$MGW_ROOT/.trash.$$.$mgw_self_start.$mgw_trash_n"
}

# Deletes this gateway's trash, and that of gateways that died before they could.
mgw_empty_trash() {
  mgw_ok=0
  set +f
  for mgw_t in "$MGW_ROOT"/.trash.*.*.*; do
    set -f
    { [ -d "$mgw_t" ] && [ ! -L "$mgw_t" ]; } || continue
    mgw_tp=${mgw_t#"$MGW_ROOT"/.trash.}
    mgw_tpid=${mgw_tp%%.*}
    mgw_tp=${mgw_tp#*.}
    if [ "$mgw_tpid" != $$ ] && mgw_alive "$mgw_tpid" "${mgw_tp%%.*}"; then continue; fi
    mgw_remove_job "$mgw_t" || mgw_ok=1
  done
  set -f
  return $mgw_ok
}

# Writes a small file atomically: readers see the old content or the new, never half.
mgw_write_atomic() {
  printf '%s\n' "$2" >"$1.tmp" && "$MGW_MV" -f -- "$1.tmp" "$1"
}

# ---------------------------------------------------------------------------------------------------
# Verbs

mgw_verb_probe() {
  mgw_audit_accepted accepted
  printf 'mint-gw=%s\nversion=%s\nverbs=%s\n' "$MGW_PROTOCOL" "$MGW_VERSION" "$MGW_VERBS"
  if mgw_rsync_found; then
    # shellcheck disable=SC2046
    set -- $("$MGW_RSYNC" --version 2>/dev/null)
    printf 'rsync=%s\n' "${3:-unknown}"
    printf 'rsync_path=%s\n' "$MGW_RSYNC"
    if mgw_rsync_has --confine-root; then printf 'confine_root=yes\n'; else printf 'confine_root=no\n'; fi
    if mgw_rsync_has --remote-option; then printf 'rsync_downloads=yes\n'; else printf 'rsync_downloads=no\n'; fi
  else
    printf 'rsync=missing\n'
  fi
  if mgw_which setsid; then printf 'setsid=yes\n'; else printf 'setsid=missing\n'; fi
  if mgw_which tail; then printf 'tail=yes\n'; else printf 'tail=missing\n'; fi
  if mgw_which flock; then printf 'flock=yes\n'; else printf 'flock=missing\n'; fi
  printf 'programs=%s\n' "$(mgw_program_names)"
  printf 'allow_env=%s\n' "$(mgw_allow_env_names)"
  printf 'program=%s\n' "$MGW_PROGRAM"
  if [ -f "$MGW_PROGRAM" ] && [ -x "$MGW_PROGRAM" ]; then
    printf 'program_ok=yes\n'
  else
    printf 'program_ok=no\n'
  fi
  printf 'root=%s\n' "$MGW_ROOT"
  if [ -w "$MGW_ROOT" ]; then printf 'root_writable=yes\n'; else printf 'root_writable=no\n'; fi
  mgw_free_mb
  printf 'free_mb=%s\n' "$MGW_FREE_MB"
  mgw_free_inodes
  printf 'free_inodes=%s\n' "$MGW_FREE_INODES"
  if mgw_which nproc; then printf 'cpus=%s\n' "$("$mgw_found")"; fi
  if [ -r /proc/meminfo ]; then
    while read -r mgw_k mgw_v _; do
      case $mgw_k in
        MemTotal:) printf 'mem_total_kb=%s\n' "$mgw_v" ;;
        MemAvailable:) printf 'mem_available_kb=%s\n' "$mgw_v" ;;
      esac
    done </proc/meminfo
  fi
  if [ -r /proc/loadavg ]; then
    read -r mgw_l1 mgw_l5 mgw_l15 _ </proc/loadavg
    printf 'load=%s %s %s\n' "$mgw_l1" "$mgw_l5" "$mgw_l15"
  fi
  printf 'max_jobs=%s\nmin_free_mb=%s\nmax_age_days=%s\n' "$MGW_MAX_JOBS" "$MGW_MIN_FREE_MB" "$MGW_MAX_AGE_DAYS"
  printf 'min_free_inodes=%s\nmax_job_mb=%s\nmax_job_files=%s\nclient_timeout=%s\n' \
    "$MGW_MIN_FREE_INODES" "$MGW_MAX_JOB_MB" "$MGW_MAX_JOB_FILES" "$MGW_CLIENT_TIMEOUT"
  printf 'export=%s\n' "${MGW_EXPORT:-*}"
  printf 'scheduler=%s\nmax_cpus=%s\nmax_memory_mb=%s\nmax_walltime_min=%s\n' \
    "$MGW_SCHEDULER" "$MGW_MAX_CPUS" "$MGW_MAX_MEMORY_MB" "$MGW_MAX_WALLTIME_MIN"
  [ "$MGW_SCHEDULER" = none ] || mgw_sched_probe
}

mgw_free_mb() {
  mgw_free_kb
  MGW_FREE_MB=$MGW_FREE_KB
  [ "$MGW_FREE_KB" = unknown ] || MGW_FREE_MB=$((MGW_FREE_KB / 1024))
}

# Free space under the root in KiB: POSIX df -Pk, the 4th field of its 2nd line.
mgw_free_kb() {
  mgw_df -Pk
  MGW_FREE_KB=$mgw_df_avail
}

# Free inodes under the root (GNU df -Pi, the same layout). A file system that reports no inode
# total (btrfs allocates them dynamically) has no inode floor: unknown.
mgw_free_inodes() {
  mgw_df -Pi
  MGW_FREE_INODES=$mgw_df_avail
  [ "$mgw_df_total" != 0 ] || MGW_FREE_INODES=unknown
}

# mgw_df FLAGS: sets mgw_df_total and mgw_df_avail (2nd and 4th fields of df's 2nd line under the
# root), or both to unknown.
mgw_df() {
  mgw_df_total=unknown
  mgw_df_avail=unknown
  mgw_which df || return 0
  mgw_out=$("$mgw_found" "$1" -- "$MGW_ROOT" 2>/dev/null) || return 0
  set -f
  # shellcheck disable=SC2086
  set -- ${mgw_out#*"$MGW_NL"}
  case $2$4 in
    '' | *[!0-9]*) return 0 ;;
  esac
  mgw_df_total=$2
  mgw_df_avail=$4
}



mgw_rsync_found() {
  if [ -n "$MGW_RSYNC" ]; then
    case $MGW_RSYNC in /*) ;; *) mgw_die E_CONFIG 78 "--rsync must be an absolute path" ;; esac
    [ -x "$MGW_RSYNC" ]
    return
  fi
  mgw_which rsync || return 1
  MGW_RSYNC=$mgw_found
}

# mgw_rsync_has OPTION: the site's rsync lists OPTION in its --help.
#   --confine-root (rsync >= 3.5.0) makes rsync itself refuse paths that resolve outside the work
#     dir, closing the check-then-use window that argv checks cannot see. Uploads use it where it is
#     there; downloads do not need it (mgw_serve_download).
#   --remote-option (rsync >= 3.1.0): what mgw_stage_download needs, with the daemon parameters of
#     mgw_serve_download; downloads are refused without it.
mgw_rsync_has() {
  mgw_rsync_help
  case $MGW_RSYNC_HELP in *"$1"*) return 0 ;; esac
  return 1
}

# rsync's --help text, read once per gateway process and kept for mgw_rsync_has. Read by a command
# substitution, which takes the pipe in blocks: the `| while read` loop it replaces made dash and
# bash read() it one byte at a time, ~7,500 syscalls per check (~7 ms per put or take, more on a
# loaded host; counted in test/gateway/verb-cost.test.ts). A substring of the whole text matches
# exactly when a substring of one of its lines does (neither pattern holds a newline), so the
# answers are the same.
mgw_rsync_help() {
  [ -n "${MGW_RSYNC_HELP_READ-}" ] && return 0
  MGW_RSYNC_HELP=$("$MGW_RSYNC" --help 2>/dev/null) || :
  MGW_RSYNC_HELP_READ=1
}

# rsync's server argv for an upload (downloads run rsync's daemon mode: mgw_serve_download).
mgw_rsync_template() {
  mgw_rsync_found || mgw_die E_CONFIG 78 "rsync is not installed on the external computer"
  # Fixed server flags. They must agree with what the client's rsync sends (src/transfer/rsync-args.ts):
  # -r recurse, -t times (so unchanged files are skipped), -E executability; no -l, so no symlink
  # is created; no -D, so no devices or specials. --log-format=X only makes the receiver report file
  # names. A receiver never reads the client's filter rules (exclude.c recv_filter_list reads them
  # only for a sender, or for a receiver given -m or --delete, which this argv never holds).
  MGW_RSYNC_FLAGS=-tEre$MGW_CAPS
  MGW_RSYNC_SAFETY=--munge-links
  # A peer that stops talking (or a hostile one that deadlocks the protocol) frees the server.
  MGW_RSYNC_TIMEOUT=--timeout=$MGW_CLIENT_TIMEOUT
  MGW_RSYNC_CONFINE=
  if mgw_rsync_has --confine-root; then MGW_RSYNC_CONFINE=--confine-root=$MGW_SERVE; fi
}

# An upload may only add to a job that has not started, and must leave the site its floors (free
# space, free inodes) and stay under the per-job caps for its whole length, not only at its start:
# rsync's receiver runs in its own process group beside a watchdog that stops it (mgw_put_watch).
# While it runs, putting.PID announces it, so that start can refuse to run the program on inputs
# that are still changing (mgw_check_uploads).
mgw_verb_put() {
  if [ -d "$MGW_JOBDIR/started" ]; then
    mgw_die E_STATE 68 "job $MGW_JOB has started; its inputs can no longer change"
  fi
  mgw_check_free
  mgw_lock
  mgw_make_job_dirs
  mgw_check_job_size
  # Announce the upload under the lock, after the last look at started/: start looks for uploads
  # under the same lock, so one of the two always sees the other.
  if [ -d "$MGW_JOBDIR/started" ]; then
    mgw_die E_STATE 68 "job $MGW_JOB has started; its inputs can no longer change"
  fi
  mgw_proc_start $$
  mgw_putting=$MGW_JOBDIR/putting.$$
  # (mgw_at_exit removes it, on a signal too.)
  mgw_write_atomic "$mgw_putting" "$$ $mgw_pstart" || mgw_die E_LIMIT 69 "cannot record the upload (disk or inodes full?)"
  # An inline upload remakes the work dir and writes paths it checked against a tree only it
  # touches (mgw_verb_putx): never beside another upload.
  mgw_live_upload putx
  [ -z "$mgw_live" ] || mgw_die E_STATE 68 "an upload into job $MGW_JOB is running (gateway pid $mgw_live); try again when it has ended"
  mgw_unlock
  MGW_SERVE=$MGW_WORK
  mgw_rsync_template
  mgw_audit_accepted accepted
  # --chmod: whatever modes the client sends, every directory stays open to us and every file
  # readable, so the watchdog's du and find see the whole job (a client's mode-000 directories hid
  # what was below them from both; found by review) and rm can remove it.
  set -- --server "$MGW_RSYNC_FLAGS" --log-format=X --partial --chmod=Du+rwx,Fu+rw "$MGW_RSYNC_SAFETY" "$MGW_RSYNC_TIMEOUT"
  [ -z "$MGW_RSYNC_CONFINE" ] || set -- "$@" "$MGW_RSYNC_CONFINE"
  mgw_follow_start
  if ! mgw_put_limited; then
    "$MGW_RSYNC" "$@" . "$MGW_WORK/"
    mgw_rc=$?
    mgw_follow_finish
    exit "$mgw_rc"
  fi
  mgw_need setsid
  mgw_setsid=$mgw_found
  # The watchdog must win the CPU from the upload it watches: on a busy machine an equal-priority
  # rsync ran far past a look (measured here with the test suite on both cores: the floor of 16 MB
  # overrun to 8 MB). nice only matters under contention; an idle machine uploads at full speed.
  mgw_nice=
  if mgw_which nice; then mgw_nice=$mgw_found; fi
  # The client's stream reaches rsync through the gate (mgw_put_gate), which passes no more bytes
  # than the byte floor and cap leave, whatever the CPU does. Gate and rsync are two background
  # jobs joined by a FIFO, not one pipeline: dash's `wait PID` waits for PID's whole job, and the
  # gate lives until the client ends its input, which it does only after our rsync has exited.
  # The gate's stdin is the client's, through fd 3 (a background job's stdin is /dev/null before
  # its own redirections, so `<&0` would be too), and its stderr is not the channel's, so a gate still waiting never holds the channel open.
  mgw_need mkfifo
  mgw_fifo=$MGW_JOBDIR/gate.$$
  "$mgw_found" -m 600 -- "$mgw_fifo" 2>/dev/null || mgw_die E_LIMIT 69 "cannot make the upload's pipe (disk or inodes full?)"
  exec 3<&0
  mgw_put_gate <&3 3<&- >"$mgw_fifo" 2>/dev/null &
  mgw_gate_pid=$!
  exec 3<&-
  # setsid does not fork (a background job of a non-interactive shell leads no group) and nice
  # execs, so $! is rsync's pid and its process group, which also holds the receiver it forks.
  if [ -n "$mgw_nice" ]; then
    "$mgw_setsid" "$mgw_nice" -n 10 "$MGW_RSYNC" "$@" . "$MGW_WORK/" <"$mgw_fifo" &
  else
    "$mgw_setsid" "$MGW_RSYNC" "$@" . "$MGW_WORK/" <"$mgw_fifo" &
  fi
  mgw_rsync_pid=$!
  mgw_proc_start "$mgw_rsync_pid"
  mgw_put_watch "$mgw_rsync_pid" "$mgw_pstart" &
  mgw_watch_pid=$!
  # (dash reports a KILLed job as `Killed` on stderr, which is the client's: not there.)
  { wait "$mgw_rsync_pid"; } 2>/dev/null
  mgw_rc=$?
  kill "$mgw_gate_pid" 2>/dev/null
  mgw_over=
  if [ "$mgw_rc" -eq 137 ]; then
    # KILLed: by the watchdog, which then exits with the number of the limit it saw coming.
    wait "$mgw_watch_pid"
    mgw_limit_reason $?
  else
    kill "$mgw_watch_pid" 2>/dev/null
    # A transfer quicker than the watchdog's look, one the gate stopped at a byte limit (rsync then
    # fails for want of input), or one that failed on a full disk: what counts is where the job
    # stands now.
    mgw_put_within 0 || :
    if [ -z "$mgw_over" ] && [ "$mgw_rc" -ne 0 ]; then
      mgw_gate_allowance
      [ "$mgw_allow" -gt 0 ] || mgw_over=$mgw_gate_over
    fi
  fi
  if [ -n "$mgw_over" ]; then
    mgw_lock
    mgw_job_state
    [ "$MGW_STATE" != created ] || mgw_discard "$MGW_JOBDIR"
    mgw_unlock
    mgw_empty_trash
    mgw_die E_LIMIT 69 "$mgw_over; the upload was stopped and job $MGW_JOB removed"
  fi
  mgw_follow_finish
  exit "$mgw_rc"
}

# Hashing while the upload runs (issue 17: the start's check of the inputs cost a second read of
# every byte, +1 s per GiB after a 1 GiB upload). rsync's receiver writes each file whole into a
# temp file `.NAME.XXXXXX` beside it, sequentially, and renames it when done. A follower looks for
# such temp files of 4 MiB or more (every 0.25 s, backing off to 2 s while it finds none) and
# hashes each from byte 0 as it grows (tail -f, by descriptor, so the rename does not matter) until
# the upload ends. After it, a follow becomes a JOB/hashes.put line `INODE SIZE CTIME SHA256 PATH`
# only if the file now at PATH is the inode that was followed, never shrank while followed (tail
# says so on stderr, and starts over: then the stream is not the file; rsync only appends), and
# last changed over 0.05 s before it was looked at (a later change then has a later ctime, even on
# a kernel whose timestamps move by the tick). One read, no copy beside openssl's pipe: on a
# machine whose cores the upload keeps busy, the hash competes with it for CPU all the same. The
# start's check (mgw_manifest_plain) takes a hash from there only for a file whose inode, size and
# ctime are still those: any write, truncate, rename or replacement since changes one of them.
# What it gives up: a file rewritten in place by a process of this account *while* rsync received
# it is not seen; such a process can as well rewrite it after the check, so nothing is lost. Names
# outside [A-Za-z0-9._/-] are not followed (they are hashed at the start, as before).

mgw_follow_start() {
  "$MGW_RM" -f -- "$MGW_JOBDIR/hashes.put"
  # Only where the site asks for it (--hash-uploads): on a machine whose cores the upload keeps
  # busy the hash competes with it, and a 1 GiB upload took 1.6x rsync's time here instead of
  # 1.2x (bench B2, 2 cores); a site with a core to spare gains the start's second read.
  [ -n "$MGW_HASH_UPLOADS" ] || return 0
  mgw_which openssl || return 0
  mgw_which tail || return 0
  mgw_which find || return 0
  mgw_hashing=$MGW_JOBDIR/hashing.$$
  "$MGW_MKDIR" -m 700 -- "$mgw_hashing" 2>/dev/null || { mgw_hashing=; return 0; }
  # The followers' tails end when this dies: killed after rsync (mgw_follow_finish), or within a
  # second of the gateway's own end.
  mgw_need sleep
  (while kill -0 $$ 2>/dev/null; do "$mgw_found" 1; done) </dev/null >/dev/null 2>&1 &
  mgw_sentinel=$!
  mgw_follow "$mgw_sentinel" </dev/null >/dev/null 2>&1 &
  mgw_follower=$!
}

mgw_follow_finish() {
  [ -n "$mgw_sentinel" ] || return 0
  kill "$mgw_sentinel" 2>/dev/null
  mgw_sentinel=
  kill -USR1 "$mgw_follower" 2>/dev/null
  wait "$mgw_follower" 2>/dev/null
  if [ -f "$mgw_hashing/hashes" ]; then
    "$MGW_MV" -f -- "$mgw_hashing/hashes" "$MGW_JOBDIR/hashes.put" 2>/dev/null || :
  fi
  "$MGW_RM" -rf -- "$mgw_hashing"
  mgw_hashing=
}

# mgw_follow SENTINEL (in the background): follows the upload's big temp files until SENTINEL
# dies, then writes $mgw_hashing/hashes.
mgw_follow() {
  mgw_which openssl
  mgw_fssl=$mgw_found
  mgw_which tail
  mgw_ftail=$mgw_found
  mgw_which find
  mgw_ffind=$mgw_found
  mgw_need sleep
  mgw_fsleep=$mgw_found
  mgw_fn=0
  mgw_followed=' '
  # Each look stats every file of the tree: after the first second of looks that find nothing to
  # follow, each comes twice as late as the last, up to 2 s (a big file's temp file lives for seconds, and the follow reads
  # it from byte 0, from the page cache, faster than it arrives).
  mgw_fwait=0.25
  mgw_fempty=0
  # USR1 (mgw_follow_finish): the upload is over; a trapped signal ends the builtin wait at once,
  # so the put does not sit out the rest of a sleep.
  mgw_fstop=
  trap 'mgw_fstop=1' USR1
  mgw_fsp=
  set -f
  while [ -z "$mgw_fstop" ] && kill -0 "$1" 2>/dev/null; do
    mgw_fnew=$mgw_fn
    # Split on whitespace with globbing off: a name holding any, or any byte outside the set
    # below, is skipped (its parts are checked like names, and at worst follow a file whose
    # own check at the end then decides).
    for mgw_t in $(cd -P -- "$MGW_WORK" && "$mgw_ffind" . -type f -name '.*.??????' -size +4M 2>/dev/null); do
      case $mgw_t in
        ./*) ;;
        *) continue ;;
      esac
      case $mgw_t in *[!A-Za-z0-9._/-]* | */../* | */./*) continue ;; esac
      case $mgw_followed in *" $mgw_t "*) continue ;; esac
      mgw_followed="$mgw_followed$mgw_t "
      mgw_ino=$("$mgw_ffind" "$MGW_WORK/$mgw_t" -maxdepth 0 -type f -printf '%i' 2>/dev/null) || continue
      [ -n "$mgw_ino" ] || continue
      mgw_fn=$((mgw_fn + 1))
      printf '%s %s\n' "$mgw_ino" "$mgw_t" >"$mgw_hashing/follow.$mgw_fn"
      # tail says on stderr when the file shrank (it then starts over, and the stream is no longer
      # the file): any word from it voids the follow.
      "$mgw_ftail" -c +1 -f -s 0.05 --pid="$1" -- "$MGW_WORK/$mgw_t" 2>"$mgw_hashing/tail.$mgw_fn" |
        "$mgw_fssl" dgst -sha256 -r >"$mgw_hashing/sum.$mgw_fn" 2>/dev/null &
    done
    if [ "$mgw_fn" != "$mgw_fnew" ]; then
      mgw_fwait=0.25
      mgw_fempty=0
    else
      mgw_fempty=$((mgw_fempty + 1))
      [ "$mgw_fempty" -le 4 ] || case $mgw_fwait in 0.25) mgw_fwait=0.5 ;; 0.5) mgw_fwait=1 ;; *) mgw_fwait=2 ;; esac
    fi
    "$mgw_fsleep" "$mgw_fwait" &
    mgw_fsp=$!
    wait "$mgw_fsp"
  done
  [ -z "$mgw_fsp" ] || kill "$mgw_fsp" 2>/dev/null
  wait
  [ "$mgw_fn" -gt 0 ] || return 0
  # A change within the tick of the look would leave ctime as it was: look once the last write is
  # 0.05 s old.
  "$mgw_fsleep" 0.05
  mgw_need date
  mgw_now=$("$mgw_found" +%s.%N)
  mgw_need awk
  mgw_fawk=$mgw_found
  mgw_i=0
  while [ "$mgw_i" -lt "$mgw_fn" ]; do
    mgw_i=$((mgw_i + 1))
    read -r mgw_ino mgw_t <"$mgw_hashing/follow.$mgw_i" || continue
    [ ! -s "$mgw_hashing/tail.$mgw_i" ] || continue
    read -r mgw_sum mgw_rest <"$mgw_hashing/sum.$mgw_i" 2>/dev/null || continue
    # .NAME.XXXXXX -> NAME, in the same directory.
    mgw_base=${mgw_t##*/}
    mgw_final=${mgw_t%/*}/${mgw_base#.}
    mgw_final=${mgw_final%.??????}
    mgw_st=$("$mgw_ffind" "$MGW_WORK/$mgw_final" -maxdepth 0 -type f -printf '%i %s %C@' 2>/dev/null) || continue
    # shellcheck disable=SC2016
    printf '%s %s %s %s\n' "$mgw_st" "$mgw_sum" "$mgw_final" "$mgw_ino" |
      "$mgw_fawk" -v now="$mgw_now" '
        $1 == $6 && length($4) == 64 && $4 !~ /[^0-9a-f]/ && $3 + 0.05 < now + 0 { print $1, $2, $3, $4, $5 }' \
      >>"$mgw_hashing/hashes"
  done
}

# ---------------------------------------------------------------------------------------------------
# Small jobs without rsync (issue 16). rsync's fixed cost, a local rsync with its shim and a second
# exec, was most of a small job's time: ~90 ms of a 1 KiB upload and ~50 ms of a download, where
# the job's own exec round trip is ~12 ms (perf-findings.md, section 3). putx and takex carry a
# job's files in one stream of our own, the "inline" stream:
#   mint-inline 1
#   d HEXPATH                       a directory
#   f SIZE X HEXPATH                a regular file of SIZE bytes; X is 1 for an executable, else 0
#   data
#   the files' bytes, one after the other, in the order of their f lines
# HEXPATH is the path's bytes in lowercase hex, as in manifests. takex sends the modes and times
# the program left: `d 0 MODE MTIME HEXPATH`, `f SIZE MODE MTIME HEXPATH` (find's %m and %T@).

# putx JOB: all of the job's inputs, as one inline stream on stdin of at most MGW_INLINE_MAX bytes
# (larger inputs go by put), replacing whatever an earlier attempt left. The stream is spooled and
# checked whole (every line, every path, the sizes against its length and the site's limits)
# before a byte lands in the work dir. No path can lead out of it: each is relative without an
# empty, `.` or `..` part, the work dir is made new, and no other upload into the job may run
# meanwhile (mgw_live_upload), so nothing but this request creates anything in it, and no symlink
# is ever there to go through; files are made with noclobber (O_EXCL), directories by mkdir.
# What arrives is as rsync -rtLE with put's --chmod makes it (mode u+rw, u+x for an executable,
# modes otherwise from the umask), except the times: files get the time of their arrival.
mgw_verb_putx() {
  mgw_putx_begin
  mgw_putx_receive
  printf 'mint-gw: put: job=%s entries=%s bytes=%s\n' "$MGW_JOB" "$mgw_n" "$mgw_sum" >&2
  exit 0
}

# jobx JOB LENGTH: a small job in one request, putx's upload and then what runx does (one exec and
# three audit lines fewer than putx and runx). It is accepted once, before the upload, with the
# digest of the manifest its inputs must match (`decision=accepted inputs=D`); the start checks
# them (mgw_check_inputs) as runx's does. A retry after a dropped connection sends jobx again while
# the job has not started (the upload is remade whole) and follows the log once it has.
mgw_verb_jobx() {
  mgw_putx_begin
  mgw_putx_receive
  printf 'mint-gw: put: job=%s entries=%s bytes=%s\n' "$MGW_JOB" "$mgw_n" "$mgw_sum" >&2
  # The upload is over: start's own look for uploads (mgw_check_uploads) must not find this one.
  "$MGW_RM" -f -- "$mgw_putting"
  mgw_putting=
  mgw_verb_run
}

# putx's set-up, under the lock: a job not started, no other upload into it, this one's marker,
# and a fresh work dir; then the request is accepted.
mgw_putx_begin() {
  if [ -d "$MGW_JOBDIR/started" ]; then
    mgw_die E_STATE 68 "job $MGW_JOB has started; its inputs can no longer change"
  fi
  mgw_check_free
  mgw_lock
  mgw_make_job_dirs
  if [ -d "$MGW_JOBDIR/started" ]; then
    mgw_die E_STATE 68 "job $MGW_JOB has started; its inputs can no longer change"
  fi
  mgw_live_upload all
  [ -z "$mgw_live" ] || mgw_die E_STATE 68 "an upload into job $MGW_JOB is running (gateway pid $mgw_live); try again when it has ended"
  # No upload runs: the spools of dead ones (a putx KILLed while it spooled) go.
  set +f
  for mgw_x in "$MGW_JOBDIR"/spool.*; do
    [ ! -f "$mgw_x" ] || "$MGW_RM" -f -- "$mgw_x"
  done
  set -f
  mgw_proc_start $$
  mgw_putting=$MGW_JOBDIR/putx.$$
  mgw_write_atomic "$mgw_putting" "$$ $mgw_pstart" || mgw_die E_LIMIT 69 "cannot record the upload (disk or inodes full?)"
  mgw_discarded=
  if [ -z "$mgw_created" ]; then
    mgw_discard "$MGW_WORK" || mgw_die E_INTERNAL 70 "cannot clear the inputs of an earlier upload into job $MGW_JOB"
    mgw_discarded=1
    "$MGW_MKDIR" -m 700 -- "$MGW_WORK" || mgw_die E_LIMIT 69 "cannot create work dir (disk or inodes full?)"
  fi
  mgw_unlock
  [ -z "$mgw_discarded" ] || mgw_empty_trash
  # jobx: one acceptance for the upload and the start, with the digest its inputs must match
  # (mgw_check_inputs refuses the start otherwise, and the outcome line says so).
  if [ "$MGW_VERB" = jobx ]; then mgw_audit_accepted "accepted inputs=$MGW_REQUEST_MANIFEST"; else mgw_audit_accepted accepted; fi
}

# Spools the inline stream on stdin and lands it in the work dir, every check first (mgw_verb_putx).
# Sets mgw_n and mgw_sum.
mgw_putx_receive() {
  mgw_need head
  mgw_head=$mgw_found
  mgw_need timeout
  mgw_proc_start $$
  mgw_spool=$MGW_JOBDIR/spool.$$.$mgw_pstart
  # (A client silent for --client-timeout seconds leaves a short spool, which the checks refuse.)
  "$mgw_found" "$MGW_CLIENT_TIMEOUT" "$mgw_head" -c $((MGW_INLINE_MAX + 1)) >"$mgw_spool" ||
    mgw_die E_LIMIT 69 "cannot spool the upload of job $MGW_JOB (disk full?)"
  mgw_need wc
  mgw_got=$("$mgw_found" -c <"$mgw_spool")
  mgw_got=${mgw_got##*[!0-9]}
  [ "$mgw_got" -le "$MGW_INLINE_MAX" ] || mgw_die E_USAGE 64 "an inline upload holds at most $MGW_INLINE_MAX bytes (larger inputs go by put)"
  exec 4<"$mgw_spool"
  mgw_inline_list
  [ $((mgw_hdr + mgw_sum)) -eq "$mgw_got" ] ||
    mgw_die E_USAGE 64 "the inline upload is $mgw_got bytes where its list says $((mgw_hdr + mgw_sum)) (cut short, or more than it lists)"
  # The shell's read drops a NUL byte, so a list line holding one would make the list look a byte
  # shorter than it is (red-team finding): the list must end exactly where `data` ends.
  mgw_need tail
  [ "$("$mgw_head" -c "$mgw_hdr" -- "$mgw_spool" | "$mgw_found" -c 5)" = data ] ||
    mgw_die E_USAGE 64 "an inline upload's list holds a byte its lines may not (a NUL?)"
  mgw_inline_room
  # Every path decoded (one awk) and checked before anything is made. Each line ends in its path's
  # escapes, after one (d) or three (f) fields: cut with shortest-prefix strips, since the longest
  # (##) is quadratic in dash on a 16 KiB line (red-team finding: 2 minutes of CPU for 1 MiB).
  mgw_need awk
  mgw_list=$(printf '%s' "$mgw_list" | mgw_hex_escapes) || mgw_die E_INTERNAL 70 "could not decode the upload's list"
  mgw_ifs=$IFS
  IFS=$MGW_NL
  for mgw_l in $mgw_list; do
    IFS=$mgw_ifs
    mgw_inline_entry "$mgw_l"
    IFS=$MGW_NL
  done
  # Everything lands relative to the work dir, our cwd from here: an rm of the job while this runs
  # moves the dir (cwd and all) to the trash, where the rest lands and goes with it, instead of a
  # later `mkdir -p` of an absolute path making the job anew, unlocked and unseen by start, beside
  # a program that might plant a symlink (red-team finding).
  cd -P -- "$MGW_WORK" || mgw_die E_INTERNAL 70 "cannot enter the work dir of job $MGW_JOB"
  set -C
  for mgw_l in $mgw_list; do
    IFS=$mgw_ifs
    mgw_inline_entry "$mgw_l"
    mgw_dest=./$mgw_decoded
    if [ -e "$mgw_dest" ] || [ -L "$mgw_dest" ]; then
      # (Only a directory made on the way to an earlier file may come again, as a `d` line.)
      if [ "${mgw_l%% *}" != d ] || [ ! -d "$mgw_dest" ] || [ -L "$mgw_dest" ]; then
        mgw_die E_USAGE 64 "the inline upload names one path twice"
      fi
    fi
    case $mgw_l in
      'd '*)
        [ -d "$mgw_dest" ] || "$MGW_MKDIR" -p -- "$mgw_dest" 2>/dev/null ||
          mgw_die E_USAGE 64 "cannot make a directory of the upload (a file on its path?)" ;;
      'f '*)
        mgw_f=${mgw_l#f }
        [ -d "${mgw_dest%/*}" ] || "$MGW_MKDIR" -p -- "${mgw_dest%/*}" 2>/dev/null ||
          mgw_die E_USAGE 64 "cannot make a directory of the upload (a file on its path?)"
        { "$mgw_head" -c "${mgw_f%% *}" <&4 >"$mgw_dest"; } 2>/dev/null ||
          mgw_die E_LIMIT 69 "cannot write the inputs of job $MGW_JOB (disk or inodes full?)"
        mgw_f=${mgw_f#* }
        if [ "${mgw_f%% *}" = 1 ]; then
          "$MGW_CHMOD" u+x -- "$mgw_dest" || mgw_die E_INTERNAL 70 "cannot mark an input executable"
        fi ;;
    esac
    IFS=$MGW_NL
  done
  IFS=$mgw_ifs
  set +C
  cd - >/dev/null || :
  exec 4<&-
  "$MGW_RM" -f -- "$mgw_spool"
  mgw_spool=
}

# mgw_inline_entry LINE: a decoded list line (`d ESC` or `f SIZE X ESC`); mgw_decoded is its path,
# checked (mgw_inline_path).
mgw_inline_entry() {
  mgw_e=${1#* }
  case $1 in 'f '*) mgw_e=${mgw_e#* }; mgw_e=${mgw_e#* } ;; esac
  mgw_inline_path "$mgw_e"
}

# Reads the inline stream's list from fd 4, up to and with its `data` line, checking every line:
# sets mgw_list (the entry lines), mgw_n (their number), mgw_sum (the files' bytes) and mgw_hdr
# (the list's own bytes).
mgw_inline_list() {
  IFS= read -r mgw_l <&4 || mgw_l=
  [ "$mgw_l" = 'mint-inline 1' ] || mgw_die E_USAGE 64 "an inline upload begins with the line 'mint-inline 1'"
  mgw_hdr=14
  mgw_list=
  mgw_n=0
  mgw_sum=0
  while :; do
    IFS= read -r mgw_l <&4 || mgw_die E_USAGE 64 "an inline upload's list ends with the line 'data'"
    mgw_hdr=$((mgw_hdr + ${#mgw_l} + 1))
    [ "$mgw_l" != data ] || break
    mgw_n=$((mgw_n + 1))
    [ "$mgw_n" -le "$MGW_INLINE_ENTRIES" ] || mgw_die E_USAGE 64 "an inline upload lists at most $MGW_INLINE_ENTRIES entries"
    case $mgw_l in
      'd '*) mgw_hex=${mgw_l#d } ;;
      'f '[0-9]*' '[01]' '*)
        mgw_f=${mgw_l#f }
        mgw_size=${mgw_f%% *}
        case $mgw_size in 0 | [1-9] | [1-9][0-9] | [1-9][0-9][0-9] | [1-9][0-9][0-9][0-9] | [1-9][0-9][0-9][0-9][0-9] | [1-9][0-9][0-9][0-9][0-9][0-9] | [1-9][0-9][0-9][0-9][0-9][0-9][0-9]) ;;
          *) mgw_die E_USAGE 64 "an inline file's size is a decimal number under $MGW_INLINE_MAX" ;;
        esac
        mgw_sum=$((mgw_sum + mgw_size))
        mgw_hex=${mgw_f#* }
        mgw_hex=${mgw_hex#* } ;;
      *) mgw_die E_USAGE 64 "an inline upload's lines are 'd HEXPATH', 'f SIZE X HEXPATH' and 'data'" ;;
    esac
    case $mgw_hex in
      '' | *[!0-9a-f]*) mgw_die E_USAGE 64 "an inline path is its bytes in lowercase hex" ;;
    esac
    if [ $((${#mgw_hex} % 2)) -ne 0 ] || [ ${#mgw_hex} -gt 8192 ]; then
      mgw_die E_USAGE 64 "an inline path is 1-4096 whole bytes of hex"
    fi
    mgw_list=$mgw_list$mgw_l$MGW_NL
  done
}

# The inline upload against the site's limits, before anything is written: its bytes and entries
# (each at least an inode, a file at most a block more than its bytes) within the job caps, and
# the floors still held once they are in.
mgw_inline_room() {
  # Every entry, and every directory a path makes on its way (one `f a/a/.../x` line made 2,000 of
  # them past --max-job-files: red-team finding), takes an inode: the distinct directories of all
  # paths, counted on the hex (a / is 2f at a whole byte), with the files.
  mgw_need awk
  # shellcheck disable=SC2016
  mgw_n=$(printf '%s' "$mgw_list" | "$mgw_found" '
    { h = $NF
      if ($1 == "d") dirs[h] = 1; else files++
      for (i = 1; i < length(h); i += 2) if (substr(h, i, 2) == "2f") dirs[substr(h, 1, i - 1)] = 1 }
    END { n = files; for (d in dirs) n++; print n + 0 }') || mgw_die E_INTERNAL 70 "could not count the upload's entries"
  mgw_need_kb=$(((mgw_sum + 1023) / 1024 + mgw_n * 4))
  if [ "$MGW_MAX_JOB_MB" -gt 0 ] && [ "$mgw_sum" -gt $((MGW_MAX_JOB_MB * 1048576)) ]; then
    mgw_inline_over "job $MGW_JOB would pass the site's cap of $MGW_MAX_JOB_MB MB per job"
  fi
  if [ "$MGW_MAX_JOB_FILES" -gt 0 ] && [ "$mgw_n" -gt "$MGW_MAX_JOB_FILES" ]; then
    mgw_inline_over "job $MGW_JOB would pass the site's cap of $MGW_MAX_JOB_FILES files per job"
  fi
  if [ "$MGW_MIN_FREE_MB" -gt 0 ] && mgw_free_kb && [ "$MGW_FREE_KB" != unknown ] &&
    [ $((MGW_FREE_KB - mgw_need_kb)) -lt $((MGW_MIN_FREE_MB * 1024)) ]; then
    mgw_inline_over "free space under the job root would fall below the site's floor of $MGW_MIN_FREE_MB MB"
  fi
  if [ "$MGW_MIN_FREE_INODES" -gt 0 ] && mgw_free_inodes && [ "$MGW_FREE_INODES" != unknown ] &&
    [ $((MGW_FREE_INODES - mgw_n)) -lt "$MGW_MIN_FREE_INODES" ]; then
    mgw_inline_over "free inodes under the job root would fall below the site's floor of $MGW_MIN_FREE_INODES"
  fi
}

# A limit refuses the inline upload as it refuses put: the job, still created, goes.
mgw_inline_over() {
  exec 4<&-
  mgw_lock
  mgw_job_state
  [ "$MGW_STATE" != created ] || mgw_discard "$MGW_JOBDIR"
  mgw_unlock
  mgw_empty_trash
  mgw_die E_LIMIT 69 "$1; the upload was refused and job $MGW_JOB removed"
}

# mgw_inline_path ESCAPES: mgw_decoded is the path; refused unless relative, without NUL and without
# an empty, `.` or `..` part.
mgw_inline_path() {
  [ "$1" != NUL ] || mgw_die E_USAGE 64 "an inline path may not hold a NUL byte"
  mgw_decode "$1"
  case /$mgw_decoded/ in
    //* | */./* | */../* | *//*) mgw_die E_USAGE 64 "an inline path is relative, without empty, '.' or '..' parts" ;;
  esac
  # A part longer than a file name may be fails only once things are made: refused before.
  mgw_pifs=$IFS
  IFS=/
  for mgw_part in $mgw_decoded; do
    [ ${#mgw_part} -le 255 ] || mgw_die E_USAGE 64 "an inline path's part is longer than 255 bytes"
  done
  IFS=$mgw_pifs
}

# mgw_live_upload all|putx [sweep]: mgw_live is the pid of a live upload into the job other than
# this request's (put's putting.PID or putx's putx.PID markers; with `putx`, only putx's), or empty;
# with sweep, the markers of dead ones are removed (mgw_check_uploads).
mgw_live_upload() {
  mgw_live=
  mgw_sweep=${2:-}
  set +f
  if [ "$1" = putx ]; then set -- "$MGW_JOBDIR"/putx.*; else set -- "$MGW_JOBDIR"/putting.* "$MGW_JOBDIR"/putx.*; fi
  set -f
  for mgw_m in "$@"; do
    [ -f "$mgw_m" ] || continue
    case $mgw_m in *.tmp | */putting.$$ | */putx.$$) continue ;; esac
    if mgw_read_file "$mgw_m" && mgw_alive "${mgw_value%% *}" "${mgw_value#* }"; then
      mgw_live=${mgw_value%% *}
    elif [ -n "$mgw_sweep" ]; then
      "$MGW_RM" -f -- "$mgw_m"
    fi
  done
}

# Under the lock: the job dir and its work dir, made if missing (mgw_created says so), never a
# symbolic link.
mgw_make_job_dirs() {
  mgw_created=
  if [ ! -d "$MGW_JOBDIR" ]; then
    "$MGW_MKDIR" -m 700 -- "$MGW_JOBDIR" 2>/dev/null || mgw_die E_LIMIT 69 "cannot create job dir (disk or inodes full?)"
    mgw_created=1
  fi
  { [ ! -L "$MGW_JOBDIR" ] && [ ! -L "$MGW_WORK" ]; } || mgw_die E_STATE 68 "job dir holds a symbolic link"
  [ -d "$MGW_WORK" ] || "$MGW_MKDIR" -m 700 -- "$MGW_WORK" || mgw_undo_created E_LIMIT 69 "cannot create work dir (disk or inodes full?)"
}

# A refusal right after mgw_make_job_dirs: what this request made goes again.
mgw_undo_created() {
  [ -z "$mgw_created" ] || "$MGW_RM" -rf -- "$MGW_JOBDIR"
  mgw_die "$@"
}

# mgw_put_gate: copies the client's stream (stdin) to rsync (stdout) in chunks, and before each
# chunk measures what is left above the byte floor and under the byte cap: a chunk is at most half
# of that (and at most 64 MiB), so the bytes rsync receives can never outrun the room left, however
# late the watchdog is scheduled. An upload's disk use is its data, give or take a block per file;
# what a hostile stream can make take more room (many tiny files, a delta against an uploaded
# basis) is the watchdog's. When less than 64 KiB may pass, the gate ends rsync's input: the
# upload fails, and put names the limit.
mgw_put_gate() {
  mgw_need dd
  mgw_dd=$mgw_found
  exec 5>&1 3<&-
  while :; do
    mgw_gate_allowance
    [ "$mgw_allow" -gt 0 ] || exit 0
    # dd without fullblock passes each read on at once (the protocol's small messages are never
    # held back) and stops after `count` reads of at most 64 KiB: at most the allowance. (head -c
    # holds its output in stdio's buffer, and dd's iflag=count_bytes counts partial reads as
    # records and stops early: both measured here.) Fewer reads than asked for means the end of
    # input; its first stderr line is `FULL+PARTIAL records in`.
    mgw_reads=$((mgw_allow / 65536))
    mgw_done=$("$mgw_dd" bs=65536 count="$mgw_reads" 2>&1 >&5) || exit 0
    mgw_done=${mgw_done%%" records in"*}
    # (GNU dd may first warn about a partial read on a line of its own.)
    mgw_done=${mgw_done##*"$MGW_NL"}
    case $mgw_done in *[!0-9+]* | '') exit 0 ;; esac
    [ $((${mgw_done%%+*} + ${mgw_done#*+})) -ge "$mgw_reads" ] || exit 0
  done
}

# Sets mgw_allow to the bytes the gate may pass next (0: a byte limit is reached; mgw_gate_over
# says which).
mgw_gate_allowance() {
  mgw_allow=67108864
  mgw_gate_over=
  if [ "$MGW_MIN_FREE_MB" -gt 0 ] && mgw_free_kb && [ "$MGW_FREE_KB" != unknown ]; then
    mgw_room=$(((MGW_FREE_KB - MGW_MIN_FREE_MB * 1024) * 512))
    if [ "$mgw_room" -lt "$mgw_allow" ]; then
      mgw_allow=$mgw_room
      mgw_gate_over="free space under the job root would fall below the site's floor of $MGW_MIN_FREE_MB MB"
    fi
  fi
  if [ "$MGW_MAX_JOB_MB" -gt 0 ]; then
    mgw_job_kb
    mgw_room=$(((MGW_MAX_JOB_MB * 1024 - mgw_kb) * 512))
    if [ "$mgw_room" -lt "$mgw_allow" ]; then
      mgw_allow=$mgw_room
      mgw_gate_over="job $MGW_JOB would pass the site's cap of $MGW_MAX_JOB_MB MB per job"
    fi
  fi
  [ "$mgw_allow" -ge 65536 ] || mgw_allow=0
}

mgw_put_limited() {
  [ "$MGW_MIN_FREE_MB$MGW_MIN_FREE_INODES$MGW_MAX_JOB_MB$MGW_MAX_JOB_FILES" != 0000 ]
}

# mgw_put_watch PID START: every 0.02 s, stops rsync's process group when a limit is passed or, for
# the site's floors, would be passed within the next two looks at the rate since the last one (one
# look of slack for a look that comes late), and exits
# with the limit's number (mgw_limit_reason). What this cannot hold: a burst faster than one look
# (rsync makes a thousand empty files on tmpfs in ~30 ms) dips under the floor for that long; the
# upload is then stopped and removed all the same, which gives the room back.
mgw_put_watch() {
  mgw_need sleep
  mgw_sleep=$mgw_found
  mgw_prev_free=
  mgw_prev_inodes=
  mgw_put_within 1
  while mgw_alive "$1" "$2"; do
    "$mgw_sleep" 0.02
    if ! mgw_put_within 1; then
      mgw_alive "$1" "$2" && kill -KILL -"$1" 2>/dev/null
      exit "$mgw_limit"
    fi
  done
  exit 0
}

mgw_limit_reason() {
  case $1 in
    11) mgw_over="free space under the job root would fall below the site's floor of $MGW_MIN_FREE_MB MB" ;;
    12) mgw_over="free inodes under the job root would fall below the site's floor of $MGW_MIN_FREE_INODES" ;;
    13) mgw_over="job $MGW_JOB would pass the site's cap of $MGW_MAX_JOB_MB MB per job" ;;
    14) mgw_over="job $MGW_JOB would pass the site's cap of $MGW_MAX_JOB_FILES files per job" ;;
    *) mgw_over="the upload was stopped by a signal" ;;
  esac
}

# mgw_put_within PREDICT: every configured floor and cap holds (and, with PREDICT 1, each floor will
# still hold at the rate since the last call); otherwise mgw_over says which does not and mgw_limit
# is its number.
mgw_put_within() {
  mgw_floors_within "$1" || return 1
  # The caps are the site's policy, not its safety: checked as they stand, so an upload that ends
  # just under a cap is not refused for its rate.
  if [ "$MGW_MAX_JOB_MB" -gt 0 ]; then
    mgw_job_kb
    if [ "$mgw_kb" -gt $((MGW_MAX_JOB_MB * 1024)) ]; then
      mgw_limit=13
      mgw_over="job $MGW_JOB would pass the site's cap of $MGW_MAX_JOB_MB MB per job ($((mgw_kb / 1024)) MB so far)"
      return 1
    fi
  fi
  if [ "$MGW_MAX_JOB_FILES" -gt 0 ]; then
    mgw_job_files
    if [ "$mgw_files" -gt "$MGW_MAX_JOB_FILES" ]; then
      mgw_limit=14
      mgw_over="job $MGW_JOB would pass the site's cap of $MGW_MAX_JOB_FILES files per job ($mgw_files so far)"
      return 1
    fi
  fi
  return 0
}

# mgw_floors_within PREDICT: the site's floors of free space and free inodes under the job root,
# as mgw_put_within; also the one look before an upload or a program starts (PREDICT 0).
mgw_floors_within() {
  mgw_over=
  mgw_limit=0
  if [ "$MGW_MIN_FREE_MB" -gt 0 ]; then
    mgw_free_mb
    if [ "$MGW_FREE_MB" != unknown ]; then
      mgw_ahead "$1" "$MGW_FREE_MB" "$mgw_prev_free"
      mgw_prev_free=$MGW_FREE_MB
      if [ "$mgw_next" -lt "$MGW_MIN_FREE_MB" ]; then
        mgw_limit=11
        mgw_over="free space under the job root would fall below the site's floor of $MGW_MIN_FREE_MB MB ($MGW_FREE_MB MB free)"
        return 1
      fi
    fi
  fi
  if [ "$MGW_MIN_FREE_INODES" -gt 0 ]; then
    mgw_free_inodes
    if [ "$MGW_FREE_INODES" != unknown ]; then
      mgw_ahead "$1" "$MGW_FREE_INODES" "$mgw_prev_inodes"
      mgw_prev_inodes=$MGW_FREE_INODES
      if [ "$mgw_next" -lt "$MGW_MIN_FREE_INODES" ]; then
        mgw_limit=12
        mgw_over="free inodes under the job root would fall below the site's floor of $MGW_MIN_FREE_INODES ($MGW_FREE_INODES free)"
        return 1
      fi
    fi
  fi
  return 0
}

# mgw_ahead PREDICT NOW PREV: mgw_next is NOW, or with PREDICT 1 what it will be two looks on at
# the rate since PREV (NOW - 2 * (PREV - NOW)).
mgw_ahead() {
  mgw_next=$2
  [ "$1" = 0 ] || [ -z "$3" ] || mgw_next=$((3 * $2 - 2 * $3))
}

# Disk use of the job's work dir in KiB (du -s counts blocks, so sparse or partial files count as
# what they take).
mgw_job_kb() {
  mgw_need du
  mgw_kb=$("$mgw_found" -sk -- "$MGW_WORK" 2>/dev/null)
  mgw_kb=${mgw_kb%%[!0-9]*}
  [ -n "$mgw_kb" ] || mgw_kb=0
}

# Entries (files, directories, links) below the work dir: each takes an inode.
mgw_job_files() {
  mgw_need find
  mgw_find=$mgw_found
  mgw_need wc
  mgw_files=$("$mgw_find" "$MGW_WORK" -mindepth 1 2>/dev/null | "$mgw_found" -l)
  mgw_files=${mgw_files##*[!0-9]}
  [ -n "$mgw_files" ] || mgw_files=0
}

# Before an upload begins: the floors hold now, and a re-upload into a job already at its cap is
# refused before it sends anything.
mgw_check_free() {
  mgw_floors_within 0 || mgw_die E_LIMIT 69 "$mgw_over"
}

mgw_check_job_size() {
  { [ "$MGW_MAX_JOB_MB" -gt 0 ] || [ "$MGW_MAX_JOB_FILES" -gt 0 ]; } || return 0
  mgw_put_within 0 || mgw_die E_LIMIT 69 "$mgw_over"
}

mgw_verb_get() {
  mgw_require_job
  mgw_rsync_found || mgw_die E_CONFIG 78 "rsync is not installed on the external computer"
  mgw_rsync_has --remote-option || mgw_die E_CONFIG 78 "rsync on this computer is older than 3.1.0 (it lacks --remote-option); downloads need rsync >= 3.1.0"
  # rsync refuses to munge when this directory exists (it would make munged links resolve again).
  [ ! -d /rsyncd-munged ] || mgw_die E_CONFIG 78 "a directory /rsyncd-munged exists on this computer; rsync's symlink munging, which keeps downloads inside the job, is unsafe with it (remove it)"
  # Accepted before the staging acts (it costs inodes); a client gone at any moment (its `sent` line
  # then kills us with SIGPIPE) still leaves no staging tree: main turns those signals into exits,
  # which run mgw_at_exit.
  mgw_audit_accepted accepted
  # The work dir must hold still while it is staged: a program running (or started, or leaving
  # processes behind) during the staging rsync could swap a directory or file for a symlink and get
  # an outside file hard-linked, or a plain symlink, into the tree (red-team finding, seen on rsync
  # 3.1.3). So the state check and the staging run under the root lock, start refuses while a
  # staging tree lives (mgw_check_uploads), and the runner ends its group when the program ends.
  mgw_lock
  mgw_job_state
  case $MGW_STATE in running | queued) mgw_die E_STATE 68 "job $MGW_JOB is still $MGW_STATE" ;; esac
  { [ -d "$MGW_WORK" ] && [ ! -L "$MGW_WORK" ]; } || mgw_die E_NOJOB 67 "job $MGW_JOB has no work dir"
  if [ "$MGW_STATE" = lost ] && [ -n "$MGW_PID" ] && kill -0 -- "-$MGW_PID" 2>/dev/null; then
    mgw_die E_STATE 68 "job $MGW_JOB lost its runner but processes of its group still run; cancel it first"
  fi
  mgw_stage_download
  mgw_unlock
  [ "$MGW_VERB" != takex ] || mgw_inline_fits
  # What is served, hashed by us before rsync sends a byte: the program can change these bytes only
  # by changing the files, which the client then finds (src/transfer/manifest.ts).
  mgw_proc_start $$
  mgw_mffile=$MGW_JOBDIR/served.$$.$mgw_pstart
  mgw_manifest "$MGW_SERVE" >"$mgw_mffile" || mgw_die E_INTERNAL 70 "could not hash the files of job $MGW_JOB for download"
  mgw_digest_file "$mgw_mffile" || mgw_die E_INTERNAL 70 "could not hash the files of job $MGW_JOB for download"
  # The served manifest's digest goes on this request's outcome line (its acceptance came before
  # the staging, as every line must come before what it records acts); the head the client keeps is
  # the acceptance line's hash, the last this request wrote before serving.
  MGW_OUTCOME_NOTE=" outputs=$mgw_fdigest"
  mgw_audit_head=$(printf '%s\n' "$mgw_audit_last" | "$mgw_asum") && mgw_audit_head=${mgw_audit_head%% *}
  mgw_report_manifest "$mgw_mffile" "$mgw_fdigest"
  if [ "$MGW_VERB" = takex ]; then mgw_serve_inline; else mgw_serve_download; fi
  mgw_rc=$?
  [ "$MGW_VERB" != get ] || exit "$mgw_rc"
  printf 'mint-gw: sent: job=%s rsync=%s\n' "$MGW_JOB" "$mgw_rc" >&2
  [ "$mgw_rc" -eq 0 ] || exit "$mgw_rc"
  # rsync's sender can exit 0 while the receiver skipped a file it could not write, so only the
  # client knows the results are safe: once its own rsync has exited 0 it answers `remove` on
  # stdin. Anything else, end of input (a dropped connection) or silence for --client-timeout
  # seconds keeps the job.
  mgw_read_answer
  [ "$mgw_answer" = 72656d6f76650a ] || exit 0
  mgw_lock
  mgw_job_state
  if [ "$MGW_STATE" != running ] && [ "$MGW_STATE" != queued ] && mgw_discard "$MGW_JOBDIR"; then
    mgw_unlock
    mgw_empty_trash
    printf 'mint-gw: removed: job=%s\n' "$MGW_JOB" >&2
  else
    mgw_unlock
    mgw_err "E_INTERNAL: the results were sent but job $MGW_JOB could not be removed"
  fi
  exit 0
}

# What a download serves is never the work dir itself but a staging tree, JOB/export.PID.START: hard
# links to the work dir's files (so their modes and times are the program's), made by a local rsync
# with our own rules, removed when the gateway exits.
#  - --export: only the exportable files are staged (with directories only on the way to one, -m).
#    Filter rules on a server's command line do not do: the sender appends the rules the client
#    sends over the protocol to the same list, and a `!` rule among them (which a stock client never
#    sends, a hand-made one does) clears the list, allow-list and all. What is not in the tree cannot
#    leave, whatever the client's rules.
#  - symlinks are staged munged (-M--munge-links: the receiving side of a local rsync munges only
#    when told through --remote-option, pipe.c clears the sender's flag for it; rsync >= 3.1.0), so
#    `out -> /home/u` is staged as `out -> /rsyncd-munged//home/u`: a path or merge-file name that
#    goes through it resolves to nothing, while the daemon (munge symlinks = yes) unmunges the target
#    it sends (flist.c readlink_stat), so the client still sees the program's links as they are.
# Sets MGW_SERVE.
mgw_stage_download() {
  # Trees left by gateways that died (SIGKILL) go first.
  mgw_live_export "$MGW_JOBDIR" sweep
  mgw_stage_room
  mgw_proc_start $$
  MGW_SERVE=$MGW_JOBDIR/export.$$.$mgw_pstart
  mgw_staged=$MGW_SERVE
  # takex without --export: every file leaves, and no symlink may (mgw_inline_fits refuses the
  # tree if it holds one), so a hard-linked copy by cp does what rsync's staging does in a tenth
  # of the time (3-5 ms against 28-130 ms for a small job here: rsync starts three processes).
  # -a never follows a symlink (-P); a directory cp cannot read fails the staging, as for rsync.
  if [ "$MGW_VERB" = takex ] && [ -z "$MGW_EXPORT" ] && mgw_which cp; then
    "$mgw_found" -al -- "$MGW_WORK" "$MGW_SERVE" 2>/dev/null ||
      mgw_die E_LIMIT 69 "could not prepare the files of job $MGW_JOB for download (disk or inodes full?)"
    return 0
  fi
  set -- -rlpt -M--munge-links --link-dest="$MGW_WORK"
  if [ -n "$MGW_EXPORT" ]; then
    set -- "$@" -m
    mgw_rest=$MGW_EXPORT
    while [ -n "$mgw_rest" ]; do
      mgw_glob=${mgw_rest%%,*}
      case $mgw_rest in *,*) mgw_rest=${mgw_rest#*,} ;; *) mgw_rest= ;; esac
      [ -z "$mgw_glob" ] || set -- "$@" "--include=$mgw_glob"
    done
    set -- "$@" '--include=*/' '--exclude=*'
  fi
  "$MGW_RSYNC" "$@" "$MGW_WORK/" "$MGW_SERVE/" >/dev/null 2>&1 ||
    mgw_die E_LIMIT 69 "could not prepare the files of job $MGW_JOB for download (disk or inodes full?)"
  # Every staged symlink is munged; a plain one means the tree changed under the staging rsync
  # (the lock and the runner's end make that the program's doing only through a bug: refuse).
  # (takex serves no symlink at all: mgw_inline_fits refuses every one.)
  [ "$MGW_VERB" != takex ] || return 0
  mgw_need find
  mgw_plain=$("$mgw_found" "$MGW_SERVE" -type l ! -lname '/rsyncd-munged/*' 2>/dev/null) || mgw_plain=unreadable
  [ -z "$mgw_plain" ] || mgw_die E_STATE 68 "the files of job $MGW_JOB changed while they were staged for download; try again"
}

# The staged copy costs an inode (and a block) per directory and symlink of the job, however many
# downloads hold one (a silent client holds its copy up to --client-timeout): concurrent downloads
# drained a tmpfs's inodes far below --min-free-inodes (red-team finding). Under the root lock each
# download's need counts against the floors, given what the others already staged. One download
# at a time may still go under them, so that take can drain a site that is already below its floor.
mgw_stage_room() {
  { [ "$MGW_MIN_FREE_MB" -gt 0 ] || [ "$MGW_MIN_FREE_INODES" -gt 0 ]; } || return 0
  mgw_need find
  mgw_find=$mgw_found
  mgw_need wc
  mgw_stage_need=$("$mgw_find" "$MGW_WORK" \( -type d -o -type l \) 2>/dev/null | "$mgw_found" -l)
  mgw_stage_need=${mgw_stage_need##*[!0-9]}
  mgw_short=
  if [ "$MGW_MIN_FREE_INODES" -gt 0 ]; then
    mgw_free_inodes
    if [ "$MGW_FREE_INODES" != unknown ] && [ $((MGW_FREE_INODES - ${mgw_stage_need:-0})) -lt "$MGW_MIN_FREE_INODES" ]; then
      mgw_short="free inodes would fall below the site's floor of $MGW_MIN_FREE_INODES ($MGW_FREE_INODES free, the copy needs ${mgw_stage_need:-0})"
    fi
  fi
  if [ -z "$mgw_short" ] && [ "$MGW_MIN_FREE_MB" -gt 0 ]; then
    mgw_free_mb
    if [ "$MGW_FREE_MB" != unknown ] && [ $((MGW_FREE_MB - (${mgw_stage_need:-0} * 4 + 1023) / 1024)) -lt "$MGW_MIN_FREE_MB" ]; then
      mgw_short="free space would fall below the site's floor of $MGW_MIN_FREE_MB MB ($MGW_FREE_MB MB free)"
    fi
  fi
  [ -n "$mgw_short" ] || return 0
  set +f
  for mgw_j in "$MGW_ROOT"/*; do
    set -f
    mgw_live_export "$mgw_j"
    [ -z "$mgw_live" ] || mgw_die E_LIMIT 69 "cannot stage job $MGW_JOB for download now: $mgw_short while another download is staged; try again later"
  done
  set -f
}

# mgw_live_export JOBDIR [sweep]: mgw_live is the pid of a live gateway whose staging tree
# (JOBDIR/export.PID.START) is there, or empty; with sweep, the trees of dead ones are removed.
mgw_live_export() {
  mgw_live=
  set +f
  for mgw_x in "$1"/export.*.*; do
    set -f
    [ -d "$mgw_x" ] || continue
    mgw_xp=${mgw_x##*/export.}
    if mgw_alive "${mgw_xp%%.*}" "${mgw_xp#*.}"; then
      mgw_live=${mgw_xp%%.*}
    elif [ "${2:-}" = sweep ]; then
      mgw_remove_job "$mgw_x"
    fi
  done
  set -f
}

# Downloads run rsync's daemon mode over this channel (`rsync --server --daemon`, what a client's
# `rsync -e SSH host::module/` starts), with a config of our own on fd 9 whose one module, `work`,
# is the staging tree. Why not `rsync --server --sender` with a fixed argv, as uploads do: a sender
# reads the filter rules the client sends over the protocol, and a merge-file rule among them
# (`merge /etc/x`, `dir-merge ../../.netrc`, `:- FILE`) makes it open and parse a file the client
# names; a line that fails to parse was echoed back (rsync 3.5.0 NEWS), and an exclude-only merge
# tells the client the file's lines by which of its names go missing. Only --confine-root (rsync
# 3.5.0) stops that outside daemon mode; RHEL 8 ships 3.1.3 and RHEL 9 3.2.3.
# In daemon mode with `use chroot = no`, rsync sets sanitize_paths (clientserver.c rsync_module, 3.1.3
# and later: `if (module_dirlen || (!use_chroot && !*lp_daemon_chroot())) sanitize_paths = 1`),
# and with it every merge-file name is cut down to a path inside the module before it is opened
# (exclude.c parse_merge_name: sanitize_path drops a leading / and any .. above the module, for
# merge and dir-merge rules alike), as are the client's paths, --files-from and --exclude-from
# names (options.c). rsync 3.5.0's own NEWS: "A daemon already had this through its module root".
# Lexical sanitizing cannot see symlinks: the staging tree's are munged (mgw_stage_download). The
# rest of the module's rules:
#   read only        the client can only download (main.c refuses --remove-source-files too)
#   munge symlinks   kept whatever the client asks (clientserver.c restores it after parsing)
#   timeout          caps the client's own --timeout once its options are read (clientserver.c);
#                    rsync >= 3.5.0 also bounds the greeting with it (daemon_handshake_timeout).
#                    Older ones wait for the greeting and the options unbounded, and refuse
#                    --timeout on a daemon's argv: a known limit (docs/gateway-audit.md)
#   refuse options   options that would follow a link, read a file the server names, or write
#                    anything (log-file* is refused by rsync itself in daemon mode)
#   uid, gid         only as root: a root daemon would otherwise switch to nobody
# `path = .` is the current directory (util.c normalize_path), so no site path is written into the
# config, where `%VAR%` and whitespace have meanings. The greeting and module choice are rsync's own
# (@RSYNCD: lines); the client never names a path outside the module, and `list = no` hides it.
mgw_serve_download() {
  mgw_daemon_ids=
  mgw_need id
  if [ "$("$mgw_found" -u)" = 0 ]; then mgw_daemon_ids='uid = 0
gid = 0'
  fi
  (cd "$MGW_SERVE" && exec "$MGW_RSYNC" --server --daemon --config=/dev/fd/9 .) 9<<MGW_RSYNCD_CONF
# mint-gateway: one download (see mgw_serve_download)
use chroot = no
munge symlinks = yes
read only = yes
write only = no
list = no
reverse lookup = no
forward lookup = no
transfer logging = no
max verbosity = 1
log file = /dev/null
timeout = $MGW_CLIENT_TIMEOUT
$mgw_daemon_ids
[work]
path = .
refuse options = copy-links copy-unsafe-links copy-dirlinks keep-dirlinks munge-links no-munge-links files-from include-from exclude-from remove-source-files remove-sent-files delete* backup backup-dir suffix temp-dir compare-dest copy-dest link-dest write-batch only-write-batch read-batch debug copy-devices write-devices copy-as fake-super super chown usermap groupmap iconv remote-option max-alloc daemon config dparam
MGW_RSYNCD_CONF
}


# takex: the staging tree goes inline (mgw_verb_putx) only when it holds nothing but regular files
# and directories, at most MGW_INLINE_MAX bytes of them; otherwise the refusal, before the manifest
# is hashed or a byte sent, tells the client to take it with take.
mgw_inline_fits() {
  mgw_need find
  mgw_find=$mgw_found
  mgw_need awk
  # One walk: `bytes` of the regular files, or `odd` at the first entry of another kind.
  # shellcheck disable=SC2016
  mgw_bytes=$("$mgw_find" "$MGW_SERVE" -mindepth 1 -printf '%y %s\n' 2>/dev/null |
    "$mgw_found" '$1 != "f" && $1 != "d" { print "odd"; exit } $1 == "f" { n += $2 } END { print n + 0 }')
  case $mgw_bytes in
    odd*) mgw_die E_INLINE 72 "the results of job $MGW_JOB hold a symlink or a special file: take them with take" ;;
    '' | *[!0-9]*) mgw_die E_INTERNAL 70 "could not size the results of job $MGW_JOB" ;;
  esac
  [ "$mgw_bytes" -le "$MGW_INLINE_MAX" ] || mgw_die E_INLINE 72 "the results of job $MGW_JOB are over $MGW_INLINE_MAX bytes: take them with take"
}

# The staging tree as an inline stream on stdout (mgw_verb_putx): its list from one find (records
# NUL-ended, names never through the shell, turned into hex by od and awk as mgw_manifest does),
# then every file's bytes from a second find over the same tree, which nothing else writes
# (it is this request's: mgw_stage_download), in the same order. The client checks what lands
# against the manifest sent before.
mgw_serve_inline() {
  mgw_need cat
  mgw_cat=$mgw_found
  mgw_need od
  mgw_od=$mgw_found
  mgw_need awk
  printf 'mint-inline 1\n'
  # shellcheck disable=SC2016
  (cd -P -- "$MGW_SERVE" && "$mgw_find" . -mindepth 1 \( -type f -o -type d \) -printf '%y %s %m %T@ %P\0') |
    "$mgw_od" -An -v -tx1 | "$mgw_found" '
    BEGIN { for (i = 32; i < 127; i++) chr[sprintf("%02x", i)] = sprintf("%c", i) }
    {
      for (i = 1; i <= NF; i++) {
        if ($i != "00") { rec[n++] = $i; continue }
        # TYPE SIZE MODE MTIME PATH: four ASCII fields, then the path bytes
        head = ""; f = 0
        for (j = 0; j < n && f < 4; j++) { if (rec[j] == "20") f++; if (f < 4) head = head chr[rec[j]] }
        name = ""
        for (; j < n; j++) name = name rec[j]
        split(head, h, " ")
        print h[1] " " (h[1] == "d" ? 0 : h[2]) " " h[3] " " h[4] " " name
        n = 0
      }
    }' || return 70
  printf 'data\n'
  (cd -P -- "$MGW_SERVE" && "$mgw_find" . -mindepth 1 -type f -exec "$mgw_cat" -- '{}' +) || return 70
}

# The answer is every byte the client writes after the `sent` line, up to its end of input, and
# it must be exactly `remove` and a newline: compared as hex, since a shell's read would silently
# drop a NUL byte. rsync's server leaves stdin non-blocking; on Linux, opening /dev/stdin
# (/proc/self/fd/0) gives a fresh, blocking description of the same pipe. Where that cannot be
# opened the answer stays empty and the job stays (the client then sends rm itself).
mgw_read_answer() {
  mgw_answer=
  mgw_need head
  mgw_head=$mgw_found
  mgw_need od
  mgw_od=$mgw_found
  mgw_need tr
  mgw_tr=$mgw_found
  mgw_need timeout
  # A client silent for --client-timeout seconds is let go; what it sent until then does not count
  # (the `x` spoils the answer: `remove` must be followed by the end of input).
  { mgw_answer=$({ "$mgw_found" "$MGW_CLIENT_TIMEOUT" "$mgw_head" -c 64 <&3 || printf x; } | "$mgw_od" -An -tx1 | "$mgw_tr" -d ' \n'); } 3</dev/stdin 2>/dev/null
}

# ---------------------------------------------------------------------------------------------------
# Manifests: what a job's files are, byte for byte. One line per regular file under DIR,
#   HEXPATH SIZE SHA256
# HEXPATH the path relative to DIR in lowercase hex (any byte but NUL and /-rules; sorted as bytes,
# which hex keeps), SIZE in bytes, SHA256 of the content; lines sorted (LC_ALL=C), each ended by a
# newline. The client builds the same text (src/transfer/manifest.ts), so one SHA-256 of it (its
# digest) names a whole tree. Symlinks, directories and specials are not in it (uploads make none;
# a download's symlinks are rsync's business). Names never pass through the shell: two finds write
# NUL-ended records (sizes; sha256sum -z, which leaves names unescaped), od turns them into hex, and
# awk joins them by name. A file that one find saw and the other did not (it came or went in
# between), or that sha256sum could not read, is left out, which the client sees as a difference.
mgw_manifest() {
  mgw_need find
  mgw_mfind=$mgw_found
  mgw_need sha256sum
  mgw_msum=$mgw_found
  mgw_need od
  mgw_mod=$mgw_found
  mgw_need sort
  mgw_msort=$mgw_found
  mgw_need tr
  mgw_mtr=$mgw_found
  # OpenSSL's SHA-256 uses the CPU's SHA instructions where coreutils' does not: 1 GiB took 0.97 s
  # with `openssl dgst` here and 4.3 s with sha256sum (coreutils 9.1), on a 4.6 s upload. Its `-r`
  # lines are `HASH *NAME`, newline-ended and unescaped but for a name with a newline, so it is used
  # only when no name holds a newline, a carriage return or a backslash (sha256sum -z otherwise).
  mgw_mssl=
  # (An inline stream is at most MGW_INLINE_MAX bytes: sha256sum is quick enough, and spares a walk.)
  if [ "$MGW_VERB" != takex ] && [ "$MGW_VERB" != jobx ] && mgw_which openssl; then
    mgw_mssl=$mgw_found
    mgw_odd=$(cd -P -- "$1" && "$mgw_mfind" . -type f \( -name '*\\*' -o -name "*$MGW_NL*" -o -name "*$(printf '\r')*" \) -print -quit) || mgw_odd=x
    [ -z "$mgw_odd" ] || mgw_mssl=
  fi
  mgw_need awk
  if [ -n "$mgw_mssl" ]; then
    mgw_manifest_plain "$1" "${2:-}"
    return
  fi
  # shellcheck disable=SC2016
  (cd -P -- "$1" && { "$mgw_mfind" . -type f -printf 'S%s %P\0' && mgw_manifest_sums; } |
    "$mgw_mod" -An -v -tx1 | "$mgw_found" '
    BEGIN { for (i = 32; i < 127; i++) chr[sprintf("%02x", i)] = sprintf("%c", i) }
    {
      for (i = 1; i <= NF; i++) {
        if ($i != "00") { rec[n++] = $i; continue }
        if (rec[0] == "53") {
          size = ""
          for (j = 1; j < n && rec[j] != "20"; j++) size = size chr[rec[j]]
          name = ""
          for (j++; j < n; j++) name = name rec[j]
          sizes[name] = size
        } else if (n > 68 && rec[64] == "20" && rec[66] == "2e" && rec[67] == "2f") {
          sum = ""
          for (j = 0; j < 64; j++) sum = sum chr[rec[j]]
          # "  NAME" or " *NAME", NAME as find gave it: ./PATH
          name = ""
          for (j = 68; j < n; j++) name = name rec[j]
          sums[name] = sum
        }
        n = 0
      }
    }
    END { for (name in sizes) if (name in sums) print name " " sizes[name] " " sums[name] }' | "$mgw_msort")
}

# mgw_manifest_plain DIR [HASHES]: mgw_manifest's lines for a tree whose names hold no newline, carriage return or backslash (only
# then is mgw_mssl set): find's and openssl's lines are newline-ended and unescaped, so awk takes
# each name as it is and hexes the name alone. The od route above turns every byte of every hash,
# size and name into a token for awk: on B3's 5,000 files of 4 KiB that took more CPU than the
# hashing (0.20 s of awk and od against 0.06 s of find and openssl, measured here).
mgw_manifest_plain() {
  mgw_mdir=$1
  mgw_mcache=${2:-}
  mgw_hits=
  # HASHES (the upload's, mgw_follow): a file whose inode, size and ctime are still the ones its
  # line names is not read again; every other file is. "$@" becomes find's `! -path` for each.
  set --
  if [ -n "$mgw_mcache" ] && [ -f "$mgw_mcache" ] && [ ! -L "$mgw_mcache" ]; then
    while read -r mgw_hi mgw_hs mgw_hc mgw_hsum mgw_hp; do
      case $mgw_hp in
        ./*) ;;
        *) continue ;;
      esac
      case $mgw_hp in *[!A-Za-z0-9._/-]*) continue ;; esac
      case $mgw_hsum in *[!0-9a-f]*) continue ;; esac
      [ ${#mgw_hsum} -eq 64 ] || continue
      mgw_hst=$(cd -P -- "$mgw_mdir" && "$mgw_mfind" "$mgw_hp" -maxdepth 0 -type f -printf '%i %s %C@' 2>/dev/null) || continue
      [ "$mgw_hst" = "$mgw_hi $mgw_hs $mgw_hc" ] || continue
      mgw_hits="$mgw_hits$mgw_hsum *$mgw_hp$MGW_NL"
      set -- "$@" ! -path "$mgw_hp"
    done <"$mgw_mcache"
  fi
  # shellcheck disable=SC2016
  (cd -P -- "$mgw_mdir" && {
    "$mgw_mfind" . -type f -printf 'S%s %P\n' && printf '%s' "$mgw_hits" &&
      "$mgw_mfind" . -type f "$@" -exec "$mgw_mssl" dgst -sha256 -r '{}' + 2>/dev/null
  } |
    "$mgw_found" '
    BEGIN { for (i = 1; i < 256; i++) hex[sprintf("%c", i)] = sprintf("%02x", i) }
    /^S[0-9]+ / { sp = index($0, " "); sizes[substr($0, sp + 1)] = substr($0, 2, sp - 2); next }
    # `HASH *./PATH`
    length($0) > 68 && substr($0, 65, 4) == " *./" { sums[substr($0, 69)] = substr($0, 1, 64) }
    END {
      for (name in sizes) if (name in sums) {
        h = ""
        for (j = 1; j <= length(name); j++) h = h hex[substr(name, j, 1)]
        print h " " sizes[name] " " sums[name]
      }
    }' | "$mgw_msort")
}

# The `HASH  ./PATH` (or `HASH *./PATH`) records of every regular file under the current directory,
# NUL-ended (mgw_manifest).
mgw_manifest_sums() {
  if [ -n "$mgw_mssl" ]; then
    "$mgw_mfind" . -type f -exec "$mgw_mssl" dgst -sha256 -r '{}' + 2>/dev/null | "$mgw_mtr" '\n' '\000'
  else
    "$mgw_mfind" . -type f -exec "$mgw_msum" -z -- '{}' + 2>/dev/null
  fi
}

# mgw_digest_file FILE: mgw_fdigest is the SHA-256 of FILE.
mgw_digest_file() {
  mgw_need sha256sum
  mgw_fdigest=$("$mgw_found" <"$1") || return 1
  mgw_fdigest=${mgw_fdigest%% *}
  [ ${#mgw_fdigest} -eq 64 ]
}

# mgw_report_manifest FILE DIGEST: the manifest on stderr, a line per file, then its end:
#   mint-gw: manifest: HEXPATH SIZE SHA256
#   mint-gw: manifest-end: job=J files=N sha256=DIGEST version=V audit=HEAD
# (HEAD: the hash of this request's accepted line, the audit chain's head as this request left it.)
mgw_report_manifest() {
  mgw_need awk
  # (-v values: a UUID, hex digests and our version: no backslash for awk to read as an escape.)
  # shellcheck disable=SC2016
  "$mgw_found" -v job="$MGW_JOB" -v sum="$2" -v ver="$MGW_VERSION" -v head="${mgw_audit_head:--}" '
    { print "mint-gw: manifest: " $0 }
    END { print "mint-gw: manifest-end: job=" job " files=" NR " sha256=" sum " version=" ver " audit=" head }' <"$1" >&2
}

# startx/runx with a `manifest` line: the work dir must hold exactly the files the client sent, byte
# for byte (a file changed, missing or added since the upload refuses the start, E_INTEGRITY). On a
# difference the gateway's own manifest goes to stderr (mgw_report_manifest) so the client can name
# the files. Its digest goes into the start's audit line (inputs=). The manifest stays in the job
# dir (manifest.in) as the site's record of what the program was given.
mgw_check_inputs() {
  [ -n "$MGW_REQUEST_MANIFEST" ] || return 0
  mgw_mf=/dev/null
  if [ -d "$MGW_WORK" ] && [ ! -L "$MGW_WORK" ]; then
    mgw_mf=$MGW_JOBDIR/manifest.in
    mgw_manifest "$MGW_WORK" "$MGW_JOBDIR/hashes.put" >"$mgw_mf" || mgw_die E_INTERNAL 70 "could not hash the inputs of job $MGW_JOB"
  fi
  # No upload (no work dir yet: start makes it): the empty manifest.
  mgw_digest_file "$mgw_mf" || mgw_die E_INTERNAL 70 "could not hash the inputs of job $MGW_JOB"
  if [ "$mgw_fdigest" != "$MGW_REQUEST_MANIFEST" ]; then
    mgw_report_manifest "$mgw_mf" "$mgw_fdigest"
    mgw_die E_INTEGRITY 71 "the files of job $MGW_JOB are not the ones the client sent (manifest $mgw_fdigest here, $MGW_REQUEST_MANIFEST sent); the program was not started"
  fi
  MGW_INPUTS=$mgw_fdigest
}

mgw_verb_start() {
  mgw_start_job
  mgw_print_status
}

# start, and then what `logs JOB 0` does: the start report goes to stderr (stdout is the log) as
#   mint-gw: started: job=J state=S pid=P
mgw_verb_run() {
  mgw_start_job
  printf 'mint-gw: started: job=%s state=%s pid=%s\n' "$MGW_JOB" "$MGW_STATE" "${MGW_PID:--}" >&2
  # The submission's own word (queued), before the follow asks again: a scheduler may start a job
  # within the second (Grid Engine here did), and the client's `queued` would never come.
  [ -z "${MGW_SCHED_JOB:-}" ] || mgw_sched_report
  mgw_check_log
  MGW_OFFSET=0
  mgw_follow_log
}

# Starts the program detached unless the job has started already (a retry after a lost reply must
# not run it twice); sets MGW_STATE, MGW_PID and MGW_EXIT, and audits the request.
mgw_start_job() {
  # Validated tokens (mgw_check_request): no space, glob or quote in any, so splitting is exact.
  # shellcheck disable=SC2086
  set -- $MGW_PROG_ARGS
  if [ -n "${MGW_REQUEST+set}" ]; then
    # startx/runx: the validated request's arguments, each decoded into one argv element (never
    # through a shell), and its program; its variables are in MGW_CLIENT_ENV (mgw_read_request).
    mgw_ifs=$IFS
    IFS=$MGW_NL
    for mgw_l in $MGW_REQUEST; do
      IFS=$mgw_ifs
      case $mgw_l in
        'arg '*)
          mgw_decode "${mgw_l#* }"
          set -- "$@" "$mgw_decoded" ;;
      esac
      IFS=$MGW_NL
    done
    IFS=$mgw_ifs
    [ -z "$MGW_REQUEST_PROGRAM" ] || mgw_choose_program "$MGW_REQUEST_PROGRAM"
  fi
  if [ -z "$MGW_PROGRAM" ] && [ -n "$MGW_PROGRAMS" ]; then
    mgw_die E_USAGE 64 "this site names its programs; choose one of: $(mgw_program_names)"
  fi
  mgw_check_program
  mgw_need setsid
  mgw_setsid=$mgw_found
  case $0 in
    /*) ;;
    *) mgw_die E_CONFIG 78 "the gateway must be named by an absolute path in authorized_keys" ;;
  esac
  # Before the lock: hashing the inputs takes as long as reading them (seconds per GiB), and the
  # lock serialises every job's state changes. A job already started is not hashed again.
  [ -d "$MGW_JOBDIR/started" ] || mgw_check_inputs
  mgw_lock
  # A job without inputs: start makes its dir.
  mgw_make_job_dirs
  if ! "$MGW_MKDIR" -- "$MGW_JOBDIR/started" 2>/dev/null; then
    [ -d "$MGW_JOBDIR/started" ] || mgw_undo_created E_LIMIT 69 "cannot mark job $MGW_JOB started (disk or inodes full?)"
    # A job id names one job: a retry (a lost reply) asks for the same program and arguments; other
    # ones are another job under a reused id, whose old log must not pass for its own.
    mgw_request_digest
    if mgw_read_file "$MGW_JOBDIR/request" && [ "$mgw_value" != "$mgw_digest" ]; then
      mgw_die E_STATE 68 "job $MGW_JOB was started with another program or other arguments; a job id names one job (attach resumes it, a new id runs anew)"
    fi
    mgw_job_state
    mgw_audit_accepted already-started
    mgw_unlock
    return 0
  fi
  # The floors hold for a new program too (it will write); a job that already ran is not refused.
  mgw_floors_within 0 || mgw_unstart E_LIMIT 69 "$mgw_over"
  # From here on a refusal undoes started/ (mgw_unstart): the job is `created` again.
  mgw_check_uploads
  mgw_check_capacity
  # (jobx was accepted once, before its upload, with the inputs' digest it then checked.)
  if [ "$MGW_VERB" != jobx ]; then
    mgw_audit "decision=accepted${MGW_INPUTS:+ inputs=$MGW_INPUTS}" || mgw_unstart E_LIMIT 69 "the audit log under the job root cannot be written (disk full?); request refused"
    mgw_accepted
  fi
  mgw_request_digest
  mgw_write_atomic "$MGW_JOBDIR/request" "$mgw_digest" || mgw_unstart E_LIMIT 69 "cannot record the job's request (disk or inodes full?)"
  mgw_sweep_old
  : >"$MGW_LOGFILE" || mgw_unstart E_LIMIT 69 "cannot create the job's log (disk or inodes full?)"
  mgw_program_env
  set -- "$MGW_PROGRAM" "$@"
  mgw_ifs=$IFS
  IFS=$MGW_NL
  for mgw_e in $MGW_PENV_REV; do set -- "$mgw_e" "$@"; done
  IFS=$mgw_ifs
  if [ "$MGW_SCHEDULER" != none ]; then
    mgw_sched_submit "$@"
    mgw_unlock
    mgw_empty_trash
    return 0
  fi
  # setsid gives the runner its own session and process group, so it outlives this SSH channel and
  # cancel can signal the whole group. A background job of a non-interactive shell is not a group
  # leader, so setsid does not fork and $! is the runner's pid (and its group id).
  "$mgw_setsid" "$0" --root "$MGW_ROOT" --grace "$MGW_GRACE" --key-name "$MGW_KEY_NAME" --run-job \
    "$MGW_JOBDIR" "$MGW_ACCOUNT_UMASK" "$MGW_REQ" "$@" </dev/null >/dev/null 2>&1 8>&- &
  MGW_PID=$!
  # The runner is our unreaped child here, so its /proc entry is there even if it has ended.
  mgw_proc_start "$MGW_PID"
  MGW_PSTART=$mgw_pstart
  if ! mgw_write_atomic "$MGW_JOBDIR/pid" "$MGW_PID $MGW_PSTART"; then
    kill -KILL -"$MGW_PID" 2>/dev/null
    mgw_unstart E_LIMIT 69 "cannot record the job's pid (disk or inodes full?); the program was stopped"
  fi
  mgw_unlock
  mgw_empty_trash
  MGW_STATE=running
  MGW_EXIT=
}

# Sets mgw_digest to a checksum of what this start asks for: the program and every argument and
# variable (start's plain arguments, or startx's checked request).
mgw_request_digest() {
  mgw_need cksum
  mgw_digest=$(printf '%s|%s|%s' "$MGW_PROGRAM" "$MGW_PROG_ARGS" "${MGW_REQUEST:-}" | "$mgw_found")
}

# A start refused after it made started/ (under the lock): the job is `created` again, or gone if
# this start made it.
mgw_unstart() {
  "$MGW_RM" -f -- "$MGW_LOGFILE" "$MGW_JOBDIR/pid" "$MGW_JOBDIR/request"
  "$MGW_RMDIR" -- "$MGW_JOBDIR/started" 2>/dev/null
  mgw_undo_created "$@"
}

# The program must see its inputs complete and final: while an upload into the job is under way
# (its putting.PID names a live gateway), start is refused. put writes putting.PID before its own
# last look at started/, so an upload that began after this look is refused by put instead.
mgw_check_uploads() {
  mgw_live_upload all sweep
  [ -z "$mgw_live" ] || mgw_unstart E_STATE 68 "an upload into job $MGW_JOB is still running (gateway pid $mgw_live); start refused so that the program sees only complete inputs"
  # Nor while a download stages or serves the work dir (mgw_verb_get): the program must not change
  # what is being staged.
  mgw_live_export "$MGW_JOBDIR"
  [ -z "$mgw_live" ] || mgw_unstart E_STATE 68 "a download of job $MGW_JOB is running (gateway pid $mgw_live); start refused while its files are staged"
}

# The program's environment is built from nothing (env -i in the runner): what sshd gave the
# account (its PATH, HOME, USER, LOGNAME, SHELL; its umask is passed apart), the system's locale,
# the site's --env, and the job's MINT_JOB_ID and MINT_JOB_DIR; nothing else that the client's
# session carried. Debian's default `AcceptEnv LANG LC_*` let a client put LC_X='$(id);../../x' into
# the program's environment, bytes the argument allow-list refuses; so locale variables come from
# the system's locale file, as PAM's pam_env reads it for a login, never from the session. Sets
# MGW_PENV_REV: NAME=VALUE lines, last first (env(1) lets a later one win).
mgw_program_env() {
  MGW_PENV_REV=
  mgw_penv "PATH=$MGW_ACCOUNT_PATH"
  [ -z "${HOME:-}" ] || mgw_penv "HOME=$HOME"
  [ -z "${USER:-}" ] || mgw_penv "USER=$USER"
  [ -z "${LOGNAME:-}" ] || mgw_penv "LOGNAME=$LOGNAME"
  [ -z "${SHELL:-}" ] || mgw_penv "SHELL=$SHELL"
  mgw_system_locale
  mgw_ifs=$IFS
  IFS=$MGW_NL
  for mgw_e in $MGW_SITE_ENV; do mgw_penv "$mgw_e"; done
  # What the client set, for names the site allows (checked in mgw_read_request).
  for mgw_e in ${MGW_CLIENT_ENV:-}; do mgw_penv "$mgw_e"; done
  IFS=$mgw_ifs
  mgw_penv "MINT_JOB_ID=$MGW_JOB"
  mgw_penv "MINT_JOB_DIR=$MGW_WORK"
}

mgw_penv() {
  case $1 in *"$MGW_NL"*) return 0 ;; esac
  MGW_PENV_REV=$1$MGW_NL$MGW_PENV_REV
}

# LANG, LANGUAGE and LC_* from /etc/default/locale (Debian) or /etc/locale.conf (systemd, RHEL),
# read as data: NAME=VALUE lines, optionally quoted, values of locale-name bytes only.
mgw_system_locale() {
  for mgw_f in /etc/default/locale /etc/locale.conf; do
    { [ -f "$mgw_f" ] && [ -r "$mgw_f" ]; } || continue
    while IFS= read -r mgw_l || [ -n "$mgw_l" ]; do
      case $mgw_l in
        LANG=* | LANGUAGE=* | LC_[A-Z]*=*) ;;
        *) continue ;;
      esac
      mgw_n=${mgw_l%%=*}
      mgw_v=${mgw_l#*=}
      case $mgw_v in
        \"*\") mgw_v=${mgw_v#\"}; mgw_v=${mgw_v%\"} ;;
        \'*\') mgw_v=${mgw_v#\'}; mgw_v=${mgw_v%\'} ;;
      esac
      case $mgw_n in *[!A-Z_]*) continue ;; esac
      case $mgw_v in '' | *[!A-Za-z0-9._@:-]*) continue ;; esac
      mgw_penv "$mgw_n=$mgw_v"
    done <"$mgw_f"
    return 0
  done
}

# Counted before the program starts; --max-jobs 0 means no limit.
mgw_check_capacity() {
  [ "$MGW_MAX_JOBS" -gt 0 ] || return 0
  mgw_running=0
  mgw_self=$MGW_JOB
  mgw_list_jobs
  for mgw_id in $MGW_JOBS; do
    [ "$mgw_id" != "$mgw_self" ] || continue
    mgw_check_job "$mgw_id"
    mgw_job_state
    case $MGW_STATE in running | queued) mgw_running=$((mgw_running + 1)) ;; esac
  done
  mgw_check_job "$mgw_self"
  if [ "$mgw_running" -ge "$MGW_MAX_JOBS" ]; then
    mgw_unstart E_LIMIT 69 "$mgw_running jobs are running, the site allows $MGW_MAX_JOBS; try again later"
  fi
}

# --max-age-days: finished jobs whose dir has not changed for that long are removed when a new job
# starts (the dir's mtime moves when the job writes its exit status). Running jobs are never touched.
mgw_sweep_old() {
  [ "$MGW_MAX_AGE_DAYS" -gt 0 ] || return 0
  mgw_which date || return 0
  mgw_limit=$(($("$mgw_found" +%s) - MGW_MAX_AGE_DAYS * 86400))
  mgw_need stat
  mgw_stat=$mgw_found
  mgw_self=$MGW_JOB
  mgw_list_jobs
  for mgw_id in $MGW_JOBS; do
    [ "$mgw_id" != "$mgw_self" ] || continue
    mgw_check_job "$mgw_id"
    mgw_job_state
    case $MGW_STATE in running | queued) continue ;; esac
    mgw_mtime=$("$mgw_stat" -c %Y -- "$MGW_JOBDIR") || continue
    [ "$mgw_mtime" -ge "$mgw_limit" ] || mgw_discard "$MGW_JOBDIR"
  done
  mgw_check_job "$mgw_self"
}

# Sets MGW_JOBS to the space-separated names of the job dirs under the root. Globbing is off
# everywhere else (the command was split with set -f); it is on only for this one pattern.
mgw_list_jobs() {
  MGW_JOBS=
  set +f
  for mgw_d in "$MGW_ROOT"/*-*-*-*-*; do
    { [ -d "$mgw_d" ] && [ ! -L "$mgw_d" ]; } || continue
    mgw_is_job_name "${mgw_d##*/}" || continue
    MGW_JOBS="$MGW_JOBS ${mgw_d##*/}"
  done
  set -f
}

mgw_is_job_name() {
  # Hex in every hex position: `?` would also match '-' and let 36 dashes pass.
  case $1 in
    [0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]) return 0 ;;
  esac
  return 1
}

mgw_print_status() {
  printf 'mint-gw=%s\njob=%s\nstate=%s\n' "$MGW_PROTOCOL" "$MGW_JOB" "$MGW_STATE"
  [ -z "$MGW_EXIT" ] || printf 'exit=%s\n' "$MGW_EXIT"
  [ -z "$MGW_PID" ] || printf 'pid=%s\n' "$MGW_PID"
  if [ -f "$MGW_LOGFILE" ]; then
    mgw_need wc
    mgw_size=$("$mgw_found" -c <"$MGW_LOGFILE")
    printf 'log_bytes=%s\n' "${mgw_size## }"
  fi
  [ -z "${MGW_SCHED_JOB:-}" ] || printf 'sched=%s\nsched_id=%s\nsched_state=%s\nsched_reason=%s\n' \
    "$MGW_SCHED_JOB" "${MGW_SCHED_ID:--}" "${MGW_SCHED_STATE:--}" "${MGW_SCHED_REASON:--}"
}

mgw_verb_status() {
  mgw_require_job
  mgw_job_state
  mgw_audit_accepted accepted
  mgw_print_status
}

# Streams the log from OFFSET on stdout until the job has ended and every byte is out (GNU tail's
# --pid makes one last read after the runner dies, so no tail end is lost), then reports the final
# status on stderr as `mint-gw: status: k=v ...`, sparing the client a separate status round trip.
mgw_verb_logs() {
  mgw_require_job
  [ -d "$MGW_JOBDIR/started" ] || mgw_die E_STATE 68 "job $MGW_JOB has not started"
  mgw_check_log
  mgw_audit_accepted accepted
  mgw_follow_log
}

mgw_check_log() {
  { [ -f "$MGW_LOGFILE" ] && [ ! -L "$MGW_LOGFILE" ]; } || mgw_die E_STATE 68 "job $MGW_JOB has no log"
  mgw_need tail
  mgw_tail=$mgw_found
}

mgw_follow_log() {
  mgw_job_state
  if [ -n "$MGW_SCHED_JOB" ]; then
    mgw_sched_follow_log
    return 0
  fi
  if [ "$MGW_STATE" = running ] && [ -z "$MGW_PID" ]; then
    # No pid yet: wait the few milliseconds until start has written it.
    mgw_need sleep
    mgw_i=0
    while [ $mgw_i -lt 50 ] && ! mgw_read_file "$MGW_JOBDIR/pid"; do
      "$mgw_found" 0.1
      mgw_i=$((mgw_i + 1))
    done
    mgw_job_state
  fi
  if [ "$MGW_STATE" = running ] && [ -n "$MGW_PID" ]; then
    "$mgw_tail" -c +$((MGW_OFFSET + 1)) -s 0.02 --pid="$MGW_PID" -f -- "$MGW_LOGFILE" || exit 70
  else
    "$mgw_tail" -c +$((MGW_OFFSET + 1)) -- "$MGW_LOGFILE" || exit 70
  fi
  mgw_job_state
  printf 'mint-gw: status: job=%s state=%s exit=%s\n' "$MGW_JOB" "$MGW_STATE" "${MGW_EXIT:--}" >&2
}

# The runner ignores TERM and lives until the program has ended, so signalling its group while the
# runner is provably alive (pid and start time) reaches our processes and never somebody else's
# group that reuses the pid. Once the program has ended, the runner itself kills what is left of a
# cancelled job's group (mgw_run_job).
mgw_verb_cancel() {
  mgw_require_job
  mgw_lock
  mgw_job_state
  mgw_audit_accepted accepted
  if [ -n "$MGW_SCHED_JOB" ]; then
    mgw_sched_cancel
  elif [ "$MGW_STATE" = running ] && [ -n "$MGW_PID" ]; then
    : >"$MGW_JOBDIR/cancelled"
    mgw_unlock
    mgw_signal_runner TERM
    mgw_need sleep
    mgw_sleep=$mgw_found
    mgw_i=0
    # Wait up to --grace seconds for the program to go, then KILL what is left.
    while [ $mgw_i -lt $((MGW_GRACE * 5)) ] && mgw_alive "$MGW_PID" "$MGW_PSTART"; do
      "$mgw_sleep" 0.2
      mgw_i=$((mgw_i + 1))
    done
    if mgw_alive "$MGW_PID" "$MGW_PSTART"; then
      mgw_signal_runner KILL
      # The runner dies with its program and cannot write the program's line: this cancel does,
      # unless the runner got as far as the exit status, which it writes after its line (a runner
      # killed between the two leaves two program lines: a window of two file operations).
      [ -f "$MGW_JOBDIR/exit" ] || mgw_audit "outcome=cancelled exit=-" program || :
    fi
  elif [ "$MGW_STATE" = created ]; then
    : >"$MGW_JOBDIR/cancelled"
    "$MGW_MKDIR" -- "$MGW_JOBDIR/started" 2>/dev/null
  fi
  mgw_unlock
  mgw_job_state
  mgw_print_status
}

mgw_signal_runner() {
  mgw_alive "$MGW_PID" "$MGW_PSTART" || return 0
  kill -"$1" -"$MGW_PID" 2>/dev/null
}

mgw_verb_rm() {
  mgw_lock
  if [ ! -d "$MGW_JOBDIR" ]; then
    mgw_audit_accepted accepted
    return 0
  fi
  mgw_job_state
  case $MGW_STATE in running | queued) mgw_die E_STATE 68 "job $MGW_JOB is $MGW_STATE; cancel it first" ;; esac
  mgw_audit_accepted accepted
  mgw_discard "$MGW_JOBDIR" || mgw_die E_INTERNAL 70 "could not remove job $MGW_JOB"
  mgw_unlock
  mgw_empty_trash || mgw_die E_INTERNAL 70 "could not remove every file of job $MGW_JOB"
}

# rm -r never follows symlinks; directories are made writable first because a program may leave
# read-only ones behind. Only directories: files may be hard links (a download's staging tree links
# the work dir's files), whose mode is the original's.
mgw_remove_job() {
  [ -e "$1" ] || [ -L "$1" ] || return 0
  mgw_need find
  "$mgw_found" "$1" -type d ! -perm -u=rwx -exec "$MGW_CHMOD" u+rwx {} + 2>/dev/null
  "$MGW_RM" -rf -- "$1"
}

# `JOB STATE [exit=N]` per job; `list long` adds ` kb=N age=S` (mgw_job_usage). The plain form's
# lines stay as they were: a client from before `long` reads them with an anchored pattern and would
# drop a line with more fields, and a gateway from before `long` refuses it (E_USAGE), after which a
# newer client asks again without it.
mgw_verb_list() {
  mgw_audit_accepted accepted
  mgw_du=
  mgw_stat=
  mgw_now=
  if [ "$MGW_LIST_LONG" = 1 ]; then
    mgw_which du && mgw_du=$mgw_found
    mgw_which stat && mgw_stat=$mgw_found
    mgw_which date && mgw_now=$("$mgw_found" +%s)
  fi
  mgw_list_jobs
  for mgw_id in $MGW_JOBS; do
    mgw_check_job "$mgw_id"
    mgw_job_state
    mgw_usage=
    [ "$MGW_LIST_LONG" != 1 ] || mgw_job_usage
    printf '%s %s%s%s\n' "$MGW_JOB" "$MGW_STATE" "${MGW_EXIT:+ exit=$MGW_EXIT}" "$mgw_usage"
  done
}

# Sets mgw_usage to ` kb=N age=S` for the job: its whole dir's disk use in KiB (du -sk: one pass,
# blocks counted, hard links of a download's staging tree once), and the seconds since the dir last
# changed (its start, its end: the mtime --max-age-days sweeps by). A value that cannot be read (a
# missing tool, a job removed meanwhile) is left out; this is a listing, not a check.
mgw_job_usage() {
  if [ -n "$mgw_du" ]; then
    mgw_kb=$("$mgw_du" -sk -- "$MGW_JOBDIR" 2>/dev/null)
    mgw_kb=${mgw_kb%%[!0-9]*}
    [ -z "$mgw_kb" ] || mgw_usage=" kb=$mgw_kb"
  fi
  [ -n "$mgw_stat" ] && [ -n "$mgw_now" ] || return 0
  mgw_mtime=$("$mgw_stat" -c %Y -- "$MGW_JOBDIR" 2>/dev/null) || return 0
  case $mgw_mtime in '' | *[!0-9]*) return 0 ;; esac
  mgw_age=$((mgw_now - mgw_mtime))
  [ "$mgw_age" -ge 0 ] || mgw_age=0
  mgw_usage="$mgw_usage age=$mgw_age"
}

# ---------------------------------------------------------------------------------------------------
# Batch schedulers (--scheduler slurm|sge|pbs). On a cluster the program must not run on the login
# node the key logs into: start writes a per-job batch script that runs this gateway's own runner
# (mgw_run_job, so the `exit` file stays the authority for the exit status) and submits it (sbatch,
# qsub). The job root must be on a file system the login and compute nodes share. Files beside the
# usual ones:
#   sched         `slurm`, `sge` or `pbs`: the job was given to that scheduler (written before the
#                 submission)
#   sched_id      the scheduler's job id (written after the submission; also by the runner from
#                 SLURM_JOB_ID, JOB_ID or PBS_JOBID, should the gateway have died in between)
#   sched_final   `STATE REASON`, once the scheduler reported an end: it forgets finished jobs
#                 (Slurm's MinJobAge, 300 s by default; Grid Engine at once), the job dir does not
#   argv          the runner's argv, one element per line in hex: values never pass through a
#                 shell, and never through the scheduler, where other accounts could read them
#   batch.sh      `exec GATEWAY --root ROOT --grace N --run-sched JOBDIR`, nothing from the client
#   sched.out     the scheduler's own messages (`*** JOB 14 ON n1 CANCELLED AT ... ***`)
#   ran/          made by the runner: a job the scheduler requeues never runs the program twice
# Scheduler commands run with an empty environment but PATH and the site's SLURM_*, SGE_* and
# PBS_* --env values (SLURM_CONF, SGE_ROOT...), from --scheduler-bin or the fixed directories of
# mgw_which. Exit statuses never come from the scheduler (Grid Engine's qacct lags its
# accounting flush, Slurm forgets a job after MinJobAge and has no accounting without slurmdbd).

MGW_SCHED_POLL=2

mgw_sched_check_options() {
  case $MGW_SCHEDULER in
    none | slurm | sge | pbs) ;;
    *) mgw_die E_CONFIG 78 "--scheduler must be slurm, sge, pbs or none, got '$MGW_SCHEDULER'" ;;
  esac
  mgw_check_number "$MGW_MAX_CPUS" --max-cpus
  mgw_check_number "$MGW_MAX_MEMORY_MB" --max-memory-mb
  mgw_check_number "$MGW_MAX_WALLTIME_MIN" --max-walltime-min
  [ -z "$MGW_SCHED_BIN" ] || mgw_sched_check_bin
  # Site-fixed submission options (partition, account, QOS, a default time limit), one space
  # between tokens, each of the bytes a command token may hold plus /; never handed to a shell.
  # Options that would take over the gateway's own bookkeeping are refused.
  [ -n "$MGW_SCHED_ARGS" ] || return 0
  [ "$MGW_SCHEDULER" != none ] || mgw_die E_CONFIG 78 "--scheduler-args needs --scheduler slurm, sge or pbs"
  case $MGW_SCHED_ARGS in
    *[!A-Za-z0-9\ ._,:=+@%/-]*) mgw_die E_CONFIG 78 "--scheduler-args holds a byte outside [A-Za-z0-9 ._,:=+@%/-]" ;;
    ' '* | *' ' | *'  '*) mgw_die E_CONFIG 78 "--scheduler-args: tokens must be separated by exactly one space" ;;
  esac
  set -f
  # shellcheck disable=SC2086
  set -- $MGW_SCHED_ARGS
  mgw_prev=
  for mgw_a in "$@"; do
    ! mgw_sched_gateway_option "$mgw_a" "$mgw_prev" || mgw_die E_CONFIG 78 "--scheduler-args may not set '$mgw_a': the gateway sets it"
    mgw_prev=$mgw_a
  done
}

# mgw_sched_gateway_option TOKEN PREVIOUS: true for an option the gateway sets on every submission
# (or one that would change what the submission means: Grid Engine's -b re-splits a command line
# and loses its quoting, -@ reads more options from a file, -t/-J/--array run the script many
# times, -sync/--wait/-W block hold the submission open).
mgw_sched_gateway_option() {
  case $MGW_SCHEDULER:$1 in
    slurm:--wrap* | slurm:--output* | slurm:--error* | slurm:--input* | slurm:--chdir* | slurm:-D* | slurm:--job-name* | \
      slurm:-J* | slurm:--parsable* | slurm:--wait* | slurm:-W* | slurm:--array* | slurm:-a* | slurm:--export-file* | \
      slurm:--batch* | slurm:--open-mode* | slurm:-o* | slurm:-e* | slurm:-i*) return 0 ;;
    sge:-b | sge:-o | sge:-e | sge:-j | sge:-N | sge:-wd | sge:-cwd | sge:-terse | sge:-sync | sge:-S | sge:-@ | sge:-i | \
      sge:-t | sge:-now | sge:-shell) return 0 ;;
    pbs:-N* | pbs:-o* | pbs:-e* | pbs:-j* | pbs:-S* | pbs:-I* | pbs:-J* | pbs:-X* | pbs:-k* | pbs:-d* | pbs:-w* | pbs:-z* | \
      pbs:-W*block*) return 0 ;;
  esac
  case $MGW_SCHEDULER:$2:$1 in pbs:-W:block*) return 0 ;; esac
  return 1
}

# --scheduler-bin DIR: where the site's scheduler commands are (PBS installs in /opt/pbs/bin,
# many Slurm sites in /opt/slurm/bin); looked in before the system directories. They run with the
# account's rights, so a directory another account could write into is refused (fail closed).
mgw_sched_check_bin() {
  [ "$MGW_SCHEDULER" != none ] || mgw_die E_CONFIG 78 "--scheduler-bin needs --scheduler slurm, sge or pbs"
  case $MGW_SCHED_BIN in
    /*) ;;
    *) mgw_die E_CONFIG 78 "--scheduler-bin must be an absolute path" ;;
  esac
  case $MGW_SCHED_BIN in
    *[!A-Za-z0-9._/+@%,:=-]* | */../* | */..) mgw_die E_CONFIG 78 "--scheduler-bin may hold only [A-Za-z0-9._/+@%,:=-] and no .." ;;
  esac
  [ -d "$MGW_SCHED_BIN" ] || mgw_die E_CONFIG 78 "--scheduler-bin $MGW_SCHED_BIN is not a directory"
  mgw_need stat
  mgw_sb=$("$mgw_found" -L -c '%u %A' -- "$MGW_SCHED_BIN") || mgw_die E_CONFIG 78 "--scheduler-bin $MGW_SCHED_BIN cannot be read"
  case ${mgw_sb#* } in
    ?????w???? | ????????w?) mgw_die E_CONFIG 78 "--scheduler-bin $MGW_SCHED_BIN is writable by group or others" ;;
  esac
  mgw_need id
  case ${mgw_sb%% *} in
    0 | "$("$mgw_found" -u)") ;;
    *) mgw_die E_CONFIG 78 "--scheduler-bin $MGW_SCHED_BIN belongs to another account" ;;
  esac
}

# A resource line of a startx/runx request: KIND VALUE, VALUE a whole number 1..999999999.
mgw_sched_resource() {
  case $2 in
    '' | *[!0-9]* | 0*) mgw_die E_USAGE 64 "$1 must be a whole number from 1" ;;
  esac
  [ ${#2} -le 9 ] || mgw_die E_USAGE 64 "$1 is too large"
  case $1 in
    cpus) [ -z "${MGW_RES_CPUS:-}" ] || mgw_die E_USAGE 64 "cpus is given twice"; MGW_RES_CPUS=$2 ;;
    memory_mb) [ -z "${MGW_RES_MEMORY_MB:-}" ] || mgw_die E_USAGE 64 "memory_mb is given twice"; MGW_RES_MEMORY_MB=$2 ;;
    walltime_min) [ -z "${MGW_RES_WALLTIME_MIN:-}" ] || mgw_die E_USAGE 64 "walltime_min is given twice"; MGW_RES_WALLTIME_MIN=$2 ;;
    nodes) [ -z "${MGW_RES_NODES:-}" ] || mgw_die E_USAGE 64 "nodes is given twice"; MGW_RES_NODES=$2 ;;
  esac
}

# Over a site maximum is refused (E_LIMIT), never clamped: a job given less than it asked for
# would fail later, and further from its cause. The maxima are per job: cpus and memory count on
# every node (sbatch's --cpus-per-task and --mem are per node), so they are checked times the
# nodes. A value the client leaves out is not left to the partition's default (often no time
# limit, a whole node's memory) where the site set a maximum: walltime and memory then go to
# sbatch at the maximum, cpus and nodes at 1 (red-team finding: an empty request bypassed every cap).
mgw_sched_check_resources() {
  if [ "$MGW_SCHEDULER" = none ]; then
    [ -z "${MGW_RES_CPUS:-}${MGW_RES_MEMORY_MB:-}${MGW_RES_WALLTIME_MIN:-}${MGW_RES_NODES:-}" ] ||
      mgw_die E_USAGE 64 "this site runs programs without a batch scheduler; resources (cpus, memory, walltime, nodes) cannot be requested"
    return 0
  fi
  if [ "$MGW_MAX_CPUS" -gt 0 ] || [ "$MGW_MAX_MEMORY_MB" -gt 0 ] || [ "$MGW_MAX_WALLTIME_MIN" -gt 0 ]; then
    MGW_RES_NODES=${MGW_RES_NODES:-1}
    MGW_RES_CPUS=${MGW_RES_CPUS:-1}
  fi
  [ "$MGW_MAX_MEMORY_MB" -le 0 ] || MGW_RES_MEMORY_MB=${MGW_RES_MEMORY_MB:-$MGW_MAX_MEMORY_MB}
  [ "$MGW_MAX_WALLTIME_MIN" -le 0 ] || MGW_RES_WALLTIME_MIN=${MGW_RES_WALLTIME_MIN:-$MGW_MAX_WALLTIME_MIN}
  [ -n "${MGW_RES_CPUS:-}${MGW_RES_MEMORY_MB:-}${MGW_RES_WALLTIME_MIN:-}${MGW_RES_NODES:-}" ] || return 0
  mgw_nodes=${MGW_RES_NODES:-1}
  mgw_per=
  [ "$mgw_nodes" -le 1 ] || mgw_per=" per node, on $mgw_nodes nodes"
  mgw_sched_within "${MGW_RES_CPUS:-}" "$MGW_MAX_CPUS" "cpus" "$mgw_nodes" "$mgw_per"
  mgw_sched_within "${MGW_RES_MEMORY_MB:-}" "$MGW_MAX_MEMORY_MB" "memory (MB)" "$mgw_nodes" "$mgw_per"
  mgw_sched_within "${MGW_RES_WALLTIME_MIN:-}" "$MGW_MAX_WALLTIME_MIN" "walltime (minutes)"
  # Grid Engine gives a job more than one slot only through a parallel environment, whose names
  # are the site's own: the site names one in --scheduler-args (-pe smp 4), the client cannot.
  if [ "$MGW_SCHEDULER" = sge ] && [ "${MGW_RES_CPUS:-1}${MGW_RES_NODES:-1}" != 11 ]; then
    mgw_die E_USAGE 64 "this site's Grid Engine gives more than one CPU or node only through a parallel environment the site names (--scheduler-args '-pe NAME N'); ask for cpus 1 and nodes 1, or none"
  fi
}

# mgw_sched_within VALUE MAX LABEL [NODES PER]: VALUE (times NODES) at most MAX, when both are set.
mgw_sched_within() {
  [ -n "$1" ] && [ "$2" -gt 0 ] || return 0
  [ $(($1 * ${4:-1})) -le "$2" ] || mgw_die E_LIMIT 69 "$3 $1${5:-} is over the site maximum of $2 per job"
}

# mgw_sched_cmd NAME ARG...: runs the scheduler's command NAME (from --scheduler-bin, then the
# fixed directories of mgw_which) with PATH and the site's SLURM_*, SGE_* and PBS_* --env values
# only (env(1) takes the NAME=VALUE words up to the command); 127 when not installed.
mgw_sched_cmd() {
  if [ -n "$MGW_SCHED_BIN" ] && [ -x "$MGW_SCHED_BIN/$1" ] && [ ! -d "$MGW_SCHED_BIN/$1" ]; then
    mgw_sbin=$MGW_SCHED_BIN/$1
  else
    mgw_which "$1" || { printf 'mint-gw: %s not found in %s/usr/bin, /bin, /usr/sbin, /sbin\n' "$1" "${MGW_SCHED_BIN:+$MGW_SCHED_BIN, }" >&2; return 127; }
    mgw_sbin=$mgw_found
  fi
  shift
  mgw_which env || return 127
  mgw_senv=$mgw_found
  set -- "$mgw_sbin" "$@"
  mgw_ifs=$IFS
  IFS=$MGW_NL
  for mgw_e in $MGW_SITE_ENV; do
    case $mgw_e in SLURM_*=* | SGE_*=* | PBS_*=*) set -- "$mgw_e" "$@" ;; esac
  done
  IFS=$mgw_ifs
  "$mgw_senv" -i "PATH=${MGW_SCHED_BIN:+$MGW_SCHED_BIN:}/usr/bin:/bin:/usr/sbin:/sbin" "$@"
}

# A scheduler's job id as this gateway accepts it: Slurm and Grid Engine say a number, PBS
# NUMBER.SERVER. Ids go into key=value lines and argv, never through a shell.
mgw_sched_id_ok() {
  case $1 in '' | [!0-9]*) return 1 ;; esac
  case $MGW_SCHED_JOB:$1 in
    pbs:*[!A-Za-z0-9.-]*) return 1 ;;
    pbs:*) ;;
    *:*[!0-9]*) return 1 ;;
  esac
  [ ${#1} -le 100 ]
}

# Under the lock, in place of the detached runner: "$@" is the runner's argv after the umask
# (NAME=VALUE... PROGRAM ARG...). Sets MGW_STATE=queued and the MGW_SCHED_* values.
mgw_sched_submit() {
  # A plain start (no request on stdin) gets the site's defaults for what it did not ask (never over
  # a maximum: nothing here can fail for it).
  mgw_sched_check_resources
  # The gateway's path and the root are written into batch.sh: plain bytes only, so that no
  # quoting is needed there at all.
  case $0$MGW_ROOT in
    *[!A-Za-z0-9._/+@%,:=-]*) mgw_sched_unsubmit E_CONFIG 78 "with --scheduler, the gateway's path and --root may hold only [A-Za-z0-9._/+@%,:=-]" ;;
  esac
  mgw_need od
  mgw_od=$mgw_found
  mgw_need awk
  # One hex line per argv element (the umask first): NUL-terminated, so any byte but NUL survives.
  # shellcheck disable=SC2016
  { printf '%s\000' "$MGW_ACCOUNT_UMASK" "$@" | "$mgw_od" -An -v -tx1 |
    "$mgw_found" '{ for (i = 1; i <= NF; i++) if ($i == "00") { print v; v = "" } else v = v $i }' >"$MGW_JOBDIR/argv"; } ||
    mgw_sched_unsubmit E_LIMIT 69 "cannot write the job's batch files (disk or inodes full?)"
  # A script file, never a command line: Grid Engine's `qsub -b y` re-splits one and loses its
  # quoting (measured: `exit 3` came back as exit 0), and Torque's qsub passes no arguments.
  # --key-name (checked at start-up to [A-Za-z0-9._@-]) so that the program's audit line names the
  # site's key; the start request's audit id in a file of its own, for that line's req=.
  printf '#!/bin/sh\nexec %s --root %s --grace %s --key-name %s --run-sched %s\n' "$0" "$MGW_ROOT" "$MGW_GRACE" "$MGW_KEY_NAME" "$MGW_JOBDIR" >"$MGW_JOBDIR/batch.sh" ||
    mgw_sched_unsubmit E_LIMIT 69 "cannot write the job's batch files (disk or inodes full?)"
  mgw_write_atomic "$MGW_JOBDIR/req" "$MGW_REQ" || mgw_sched_unsubmit E_LIMIT 69 "cannot write the job's batch files (disk or inodes full?)"
  mgw_write_atomic "$MGW_JOBDIR/sched" "$MGW_SCHEDULER" || mgw_sched_unsubmit E_LIMIT 69 "cannot write the job's batch files (disk or inodes full?)"
  MGW_SCHED_JOB=$MGW_SCHEDULER
  # Ours last: a later option wins (sbatch, qsub), so the site's args cannot move the job's files,
  # and the client's resources override a site default time limit.
  set -f
  case $MGW_SCHEDULER in
    slurm)
      mgw_scmd='sbatch'
      # shellcheck disable=SC2086
      set -- $MGW_SCHED_ARGS --parsable "--job-name=mint-$MGW_JOB" "--chdir=$MGW_WORK" \
        "--output=$MGW_JOBDIR/sched.out" --open-mode=append
      [ -z "${MGW_RES_CPUS:-}" ] || set -- "$@" "--cpus-per-task=$MGW_RES_CPUS"
      [ -z "${MGW_RES_MEMORY_MB:-}" ] || set -- "$@" "--mem=$MGW_RES_MEMORY_MB"
      [ -z "${MGW_RES_WALLTIME_MIN:-}" ] || set -- "$@" "--time=$MGW_RES_WALLTIME_MIN"
      [ -z "${MGW_RES_NODES:-}" ] || set -- "$@" "--nodes=$MGW_RES_NODES" ;;
    sge)
      mgw_scmd='qsub'
      # -S: the queue's shell may be csh (Debian's default queue template says /bin/csh).
      # shellcheck disable=SC2086
      set -- $MGW_SCHED_ARGS -terse -N "mint-$MGW_JOB" -wd "$MGW_WORK" -o "$MGW_JOBDIR/sched.out" -j y -S /bin/sh
      [ -z "${MGW_RES_WALLTIME_MIN:-}" ] || set -- "$@" -l "h_rt=$((MGW_RES_WALLTIME_MIN * 60))"
      [ -z "${MGW_RES_MEMORY_MB:-}" ] || set -- "$@" -l "h_vmem=${MGW_RES_MEMORY_MB}M" ;;
    pbs)
      mgw_scmd='qsub'
      # PBS Pro / OpenPBS syntax (select, walltime). Older Torque limits a name to 15 bytes.
      # shellcheck disable=SC2086
      set -- $MGW_SCHED_ARGS -N "mint-${MGW_JOB%%-*}" -o "$MGW_JOBDIR/sched.out" -j oe -S /bin/sh
      [ -z "${MGW_RES_WALLTIME_MIN:-}" ] || set -- "$@" -l "walltime=$((MGW_RES_WALLTIME_MIN / 60)):$((MGW_RES_WALLTIME_MIN % 60 / 10))$((MGW_RES_WALLTIME_MIN % 10)):00"
      if [ -n "${MGW_RES_CPUS:-}${MGW_RES_MEMORY_MB:-}${MGW_RES_NODES:-}" ]; then
        set -- "$@" -l "select=${MGW_RES_NODES:-1}:ncpus=${MGW_RES_CPUS:-1}${MGW_RES_MEMORY_MB:+:mem=${MGW_RES_MEMORY_MB}mb}"
      fi ;;
  esac
  mgw_sid=$(mgw_sched_cmd "$mgw_scmd" "$@" "$MGW_JOBDIR/batch.sh" 2>"$MGW_JOBDIR/sched.err")
  mgw_src=$?
  # sbatch --parsable prints `ID` or `ID;CLUSTER`; qsub -terse `ID`; PBS's qsub `ID.SERVER`.
  mgw_sid=${mgw_sid%%;*}
  if [ "$mgw_src" = 0 ] && ! mgw_sched_id_ok "$mgw_sid"; then mgw_src=1; fi
  if [ "$mgw_src" != 0 ]; then
    mgw_sched_first_line "$MGW_JOBDIR/sched.err"
    mgw_sched_unsubmit E_INTERNAL 70 "$mgw_scmd refused the job (exit $mgw_src): $mgw_sline"
  fi
  if ! mgw_write_atomic "$MGW_JOBDIR/sched_id" "$mgw_sid"; then
    MGW_SCHED_ID=$mgw_sid
    mgw_sched_kill term
    mgw_sched_unsubmit E_LIMIT 69 "cannot record the scheduler's job id (disk or inodes full?); job $mgw_sid was cancelled"
  fi
  "$MGW_RM" -f -- "$MGW_JOBDIR/sched.err"
  MGW_SCHED_ID=$mgw_sid
  case $MGW_SCHEDULER in
    slurm) MGW_SCHED_STATE=PENDING ;;
    sge) MGW_SCHED_STATE=qw ;;
    pbs) MGW_SCHED_STATE=Q ;;
  esac
  MGW_SCHED_REASON=None
  MGW_STATE=queued
  MGW_PID=
  MGW_EXIT=
}

# The first line of FILE, cut to 200 bytes of [A-Za-z0-9 ._,:=+@%/()-] (it goes into a one-line
# refusal), in mgw_sline.
mgw_sched_first_line() {
  mgw_sline=
  IFS= read -r mgw_sline <"$1" 2>/dev/null
  mgw_need tr
  mgw_sline=$(printf '%.200s' "$mgw_sline" | "$mgw_found" -c 'A-Za-z0-9 ._,:=+@%/()-' '?')
  [ -n "$mgw_sline" ] || mgw_sline='(no message)'
}

mgw_sched_unsubmit() {
  "$MGW_RM" -f -- "$MGW_JOBDIR/sched" "$MGW_JOBDIR/sched_id" "$MGW_JOBDIR/argv" "$MGW_JOBDIR/batch.sh" "$MGW_JOBDIR/sched.err" "$MGW_JOBDIR/req"
  mgw_unstart "$@"
}

# mgw_sched_kill term|kill: ask the scheduler to end the job. Slurm TERMs, then KILLs on request;
# Grid Engine's qdel is a KILL at once (no TERM without -notify: measured, the TERM trap never ran);
# PBS's qdel TERMs, and `-W force` forgets a job whose node does not answer.
mgw_sched_kill() {
  [ -n "$MGW_SCHED_ID" ] || return 0
  case $MGW_SCHED_JOB:$1 in
    slurm:term) mgw_sched_cmd scancel "$MGW_SCHED_ID" ;;
    slurm:kill) mgw_sched_cmd scancel --signal=KILL --full "$MGW_SCHED_ID" ;;
    sge:*) mgw_sched_cmd qdel "$MGW_SCHED_ID" ;;
    pbs:term) mgw_sched_cmd qdel "$MGW_SCHED_ID" ;;
    pbs:kill) mgw_sched_cmd qdel -W force "$MGW_SCHED_ID" ;;
  esac >/dev/null 2>&1
  return 0
}

# mgw_sched_class STATE: what the scheduler's raw state means here, in mgw_class: queued, running,
# cancelled, lost (ended by the scheduler: time limit, node failure, an error state), ended, gone
# (the scheduler no longer knows the job), unknown (it did not answer, or said nothing we read), none.
mgw_sched_class() {
  case $1 in
    '') mgw_class=none; return 0 ;;
    GONE) mgw_class=gone; return 0 ;;
    UNREACHABLE | UNKNOWN) mgw_class=unknown; return 0 ;;
  esac
  case $MGW_SCHED_JOB in
    sge)
      # qstat's letters combine (qw, hqw, Eqw, dr, Rr): E is an error state a job never leaves by
      # itself (it needs an operator's qmod -cj), d a deletion under way.
      case $1 in
        *E*) mgw_class=lost ;;
        *r* | *t*) mgw_class=running ;;
        *q* | *w*) mgw_class=queued ;;
        *) mgw_class=running ;;
      esac ;;
    pbs)
      # PBS Pro and Torque: Q queued, W waiting for its start time, H held, T in transit; R
      # running, E exiting, B an array begun, S/U suspended; F finished (PBS Pro's history), C
      # completed (Torque, kept keep_completed seconds), X an ended subjob.
      case $1 in
        Q | W | H | T | M) mgw_class=queued ;;
        F | C | X) mgw_class=ended ;;
        *) mgw_class=running ;;
      esac ;;
    *)
      case $1 in
        PENDING | CONFIGURING | REQUEUED | REQUEUE_HOLD | REQUEUE_FED | RESV_DEL_HOLD) mgw_class=queued ;;
        RUNNING | COMPLETING | STAGE_OUT | SUSPENDED | SIGNALING | RESIZING | STOPPED) mgw_class=running ;;
        CANCELLED) mgw_class=cancelled ;;
        TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE | PREEMPTED) mgw_class=lost ;;
        *) mgw_class=ended ;;
      esac ;;
  esac
}

# Sets MGW_STATE (and MGW_EXIT, MGW_SCHED_*) for a job given to the scheduler. The `exit` file is
# the authority for the exit status; the scheduler says whether the job waits, runs, or ended
# without one (and why). Terminal states are kept in sched_final, so the answer survives the
# scheduler forgetting the job.
mgw_sched_job_state() {
  MGW_SCHED_JOB=slurm
  MGW_SCHED_ID=
  MGW_SCHED_STATE=
  MGW_SCHED_REASON=
  if mgw_read_file "$MGW_JOBDIR/sched"; then
    case $mgw_value in slurm | sge | pbs) MGW_SCHED_JOB=$mgw_value ;; esac
  fi
  mgw_read_file "$MGW_JOBDIR/sched_id" && MGW_SCHED_ID=$mgw_value
  mgw_sched_id_ok "$MGW_SCHED_ID" || MGW_SCHED_ID=
  if mgw_read_file "$MGW_JOBDIR/sched_final"; then
    MGW_SCHED_STATE=${mgw_value%% *}
    MGW_SCHED_REASON=${mgw_value#* }
  elif [ -n "$MGW_SCHED_ID" ]; then
    mgw_sched_query
  fi
  mgw_sched_class "$MGW_SCHED_STATE"
  if mgw_read_file "$MGW_JOBDIR/exit"; then
    MGW_EXIT=$mgw_value
    if [ -f "$MGW_JOBDIR/cancelled" ]; then
      MGW_STATE=cancelled
    elif [ "$mgw_class" = lost ]; then
      # The runner outlived a program the scheduler ended (it ignores TERM and writes 143).
      MGW_STATE=lost
    else
      MGW_STATE=exited
    fi
    mgw_sched_keep_final
    return 0
  fi
  case $mgw_class in
    queued) MGW_STATE=queued ;;
    # The scheduler did not answer: nothing is known to have ended.
    running | unknown) MGW_STATE=running ;;
    none)
      # No id yet: the submission is in its first moments, or the gateway died before recording the id.
      if [ -f "$MGW_JOBDIR/cancelled" ]; then
        MGW_STATE=cancelled
        return 0
      fi
      MGW_STATE=queued
      if mgw_which stat && mgw_started_at=$("$mgw_found" -c %Y -- "$MGW_JOBDIR/started") && mgw_which date; then
        [ $(($("$mgw_found" +%s) - mgw_started_at)) -lt 30 ] || { MGW_STATE=lost; MGW_SCHED_REASON=never-submitted; }
      fi ;;
    *)
      # Ended without an exit file (or the scheduler forgot it); read the file once more, in case
      # it came in between the two looks.
      if mgw_read_file "$MGW_JOBDIR/exit"; then
        MGW_EXIT=$mgw_value
        MGW_STATE=exited
      elif [ -f "$MGW_JOBDIR/cancelled" ] || [ "$mgw_class" = cancelled ]; then
        MGW_STATE=cancelled
      else
        MGW_STATE=lost
      fi
      mgw_sched_keep_final ;;
  esac
}

# MGW_SCHED_STATE and MGW_SCHED_REASON of job MGW_SCHED_ID from one poll of all of the account's
# jobs (mgw_sched_polled); GONE when the scheduler no longer knows it, UNREACHABLE when it did not
# answer.
mgw_sched_query() {
  if ! mgw_sched_polled; then
    MGW_SCHED_STATE=UNREACHABLE
    MGW_SCHED_REASON=scheduler-query-failed
    return 0
  fi
  mgw_key=${MGW_SCHED_ID%%.*}
  MGW_SCHED_STATE=GONE
  # Grid Engine drops a job from qstat the moment it ends: gone is its normal end.
  case $MGW_SCHED_JOB in
    sge) MGW_SCHED_REASON=left-the-queue ;;
    *) MGW_SCHED_REASON=forgotten-by-scheduler ;;
  esac
  mgw_ifs=$IFS
  IFS=$MGW_NL
  for mgw_l in $mgw_poll; do
    case $mgw_l in
      "$mgw_key "*)
        IFS=' '
        # shellcheck disable=SC2086
        set -- $mgw_l
        MGW_SCHED_STATE=${2:-UNKNOWN}
        MGW_SCHED_REASON=${3:-None}
        break ;;
    esac
  done
  IFS=$mgw_ifs
}

# mgw_sched_polled: mgw_poll holds the scheduler's word on the account's jobs, one line each,
# `KEY STATE REASON` (KEY the id up to its first dot; STATE and REASON words of safe bytes);
# false when the scheduler did not answer.
# Batched per job root: the answer is kept in ROOT/.mint-sched-poll (`STAMP ok|fail`, then the
# lines) and asked anew at most every MGW_SCHED_POLL (2) seconds, by one gateway under
# ROOT/.mint-sched-poll.lock while the others wait for it and read its answer; so N clients
# following N jobs cause one squeue every 2 s, not N (test/cluster/slurm-polling.test.ts counts
# them). A snapshot older than the job's submission (sched_id), its cancel marker or its exit file
# does not answer for it: that job would be missing, or still shown pending or running, only because
# the snapshot came first (seen: a finished job's result said PENDING).
mgw_sched_polled() {
  mgw_pcache=$MGW_ROOT/.mint-sched-poll
  mgw_need date
  mgw_pdate=$mgw_found
  mgw_pnow=$("$mgw_pdate" +%s)
  mgw_need stat
  mgw_pstat=$mgw_found
  # The newest event of this job the snapshot must postdate (whole seconds, as the stamp).
  mgw_pafter=0
  if [ -n "${MGW_JOBDIR:-}" ]; then
    for mgw_pf in "$MGW_JOBDIR/sched_id" "$MGW_JOBDIR/cancelled" "$MGW_JOBDIR/exit"; do
      [ -f "$mgw_pf" ] || continue
      mgw_pm=$("$mgw_pstat" -c %Y -- "$mgw_pf" 2>/dev/null) || continue
      case $mgw_pm in '' | *[!0-9]*) continue ;; esac
      [ "$mgw_pm" -le "$mgw_pafter" ] || mgw_pafter=$mgw_pm
    done
  fi
  mgw_sched_read_poll && return "$mgw_prc"
  if ! { command exec 7>>"$MGW_ROOT/.mint-sched-poll.lock"; } 2>/dev/null; then
    mgw_sched_poll
    return
  fi
  if ! "$MGW_FLOCK" -w 30 7; then
    exec 7>&-
    mgw_sched_poll
    return
  fi
  # Another gateway may have asked while this one waited for the lock.
  mgw_pnow=$("$mgw_pdate" +%s)
  if mgw_sched_read_poll; then
    exec 7>&-
    return "$mgw_prc"
  fi
  # The stamp is taken before the scheduler is asked: a job submitted meanwhile is not taken as gone.
  mgw_pstamp=$("$mgw_pdate" +%s)
  if mgw_sched_poll; then mgw_prc=0; mgw_pok=ok; else mgw_prc=1; mgw_pok=fail; fi
  { printf '%s %s\n' "$mgw_pstamp" "$mgw_pok" && printf '%s\n' "$mgw_poll"; } >"$mgw_pcache.$$" 2>/dev/null &&
    "$MGW_MV" -f -- "$mgw_pcache.$$" "$mgw_pcache" 2>/dev/null
  exec 7>&-
  return "$mgw_prc"
}

# The kept poll into mgw_poll and mgw_prc (0 answered, 1 not) when it is fresh (younger than
# MGW_SCHED_POLL seconds) and later than mgw_pafter; false otherwise.
mgw_sched_read_poll() {
  [ -f "$mgw_pcache" ] || return 1
  {
    IFS=' ' read -r mgw_pstamp mgw_pok || return 1
    case $mgw_pstamp in '' | *[!0-9]*) return 1 ;; esac
    [ $((mgw_pnow - mgw_pstamp)) -lt "$MGW_SCHED_POLL" ] && [ "$mgw_pstamp" -gt "$mgw_pafter" ] || return 1
    mgw_poll=
    while IFS= read -r mgw_pl; do mgw_poll=$mgw_poll$mgw_pl$MGW_NL; done
  } <"$mgw_pcache" 2>/dev/null || return 1
  case $mgw_pok in ok) mgw_prc=0 ;; *) mgw_prc=1 ;; esac
  return 0
}

# One call to the scheduler for all of this account's jobs (not one per job: centres ban accounts
# that poll each job, and AiiDA's users were; MInt's own remote side polls qstat every 10 s).
#   Slurm: squeue -h -t all -u USER (-t all: it hides ended jobs otherwise);
#   Grid Engine: qstat -u USER (ended jobs leave it at once; the exit file says how they ended);
#   PBS: qstat -f ID... for the root's jobs that have not ended (qstat -f shows every user's jobs
#   without ids, and -u belongs to its short format only).
mgw_sched_poll() {
  mgw_poll=
  mgw_need awk
  mgw_pawk=$mgw_found
  mgw_need id
  mgw_user=$("$mgw_found" -un) || return 1
  case $MGW_SCHED_JOB in
    slurm)
      mgw_praw=$(mgw_sched_cmd squeue -h -t all -u "$mgw_user" -o '%i|%T|%r' 2>/dev/null) || return 1
      # shellcheck disable=SC2016
      mgw_poll=$(printf '%s\n' "$mgw_praw" | "$mgw_pawk" -F '|' '
        $1 ~ /^[0-9]+$/ { st = $2; r = $3; if (st !~ /^[A-Za-z_]+$/) st = "UNKNOWN"
          gsub(/[^A-Za-z0-9_.,:=+@%-]/, "_", r); if (r == "") r = "None"; print $1, st, substr(r, 1, 80) }') ;;
    sge)
      mgw_praw=$(mgw_sched_cmd qstat -u "$mgw_user" 2>/dev/null) || return 1
      # job-ID prior name user state submit/start-at queue slots: the id and the state.
      # shellcheck disable=SC2016
      mgw_poll=$(printf '%s\n' "$mgw_praw" | "$mgw_pawk" '
        $1 ~ /^[0-9]+$/ && NF >= 5 { st = $5; if (st !~ /^[A-Za-z]+$/) st = "UNKNOWN"; print $1, st, "None" }') ;;
    pbs)
      set +f
      set --
      for mgw_p in "$MGW_ROOT"/*-*-*-*-*/sched_id; do
        [ ! -f "${mgw_p%/sched_id}/sched_final" ] || continue
        mgw_read_file "$mgw_p" && mgw_sched_id_ok "$mgw_value" && set -- "$@" "$mgw_value"
      done
      set -f
      [ $# -gt 0 ] || return 0
      # stderr too: a job PBS has forgotten is named there ("Unknown Job Id", "Job has finished")
      # while the others are on stdout, and the status is not 0.
      mgw_praw=$(mgw_sched_cmd qstat -f "$@" 2>&1; printf 'mint-rc=%s\n' "$?")
      mgw_sched_pbs_parse ;;
  esac
}

# mgw_praw (qstat -f's text, then `mint-rc=N`) into mgw_poll; false when qstat failed without
# naming any job (the server is down).
mgw_sched_pbs_parse() {
  # shellcheck disable=SC2016
  mgw_poll=$(printf '%s\n' "$mgw_praw" | "$mgw_pawk" '
    function flush() {
      if (id == "") return
      r = (ex != "" ? "exit_status=" ex : (cm != "" ? cm : "None"))
      gsub(/[^A-Za-z0-9_.,:=+@%-]/, "_", r)
      if (st !~ /^[A-Za-z]+$/) st = "UNKNOWN"
      print id, st, substr(r, 1, 80)
      id = ""
    }
    /^Job Id: / { flush(); id = $3; sub(/\..*/, "", id); if (id !~ /^[0-9]+$/) id = ""; st = ""; ex = ""; cm = ""; known = 1; next }
    /Unknown Job Id|[Jj]ob has finished/ { known = 1 }
    /^mint-rc=/ { rc = substr($0, 9) }
    /^    [A-Za-z_.]+ = / && id != "" {
      k = tolower($1); v = $0; sub(/^[^=]*= /, "", v)
      if (k == "job_state") st = v; else if (k == "exit_status") ex = v; else if (k == "comment") cm = v
    }
    END { flush(); if (rc != "0" && !known) print "mint-unreachable" }')
  case $mgw_poll in *mint-unreachable*) mgw_poll= ; return 1 ;; esac
  return 0
}

mgw_sched_keep_final() {
  case $mgw_class in
    ended | cancelled | lost) ;;
    # A job the scheduler forgot after its exit file came in: nothing more will change.
    gone) [ -f "$MGW_JOBDIR/exit" ] || return 0 ;;
    *) return 0 ;;
  esac
  [ -f "$MGW_JOBDIR/sched_final" ] && return 0
  # Several readers may race to write it; each writes the same, through its own temp name.
  printf '%s %s\n' "$MGW_SCHED_STATE" "$MGW_SCHED_REASON" >"$MGW_JOBDIR/sched_final.$$" 2>/dev/null &&
    "$MGW_MV" -f -- "$MGW_JOBDIR/sched_final.$$" "$MGW_JOBDIR/sched_final" 2>/dev/null
  # A Grid Engine job in an error state (Eqw) would sit in the queue until an operator clears it,
  # and then run after the gateway called it lost: it goes.
  if [ "$MGW_SCHED_JOB" = sge ] && [ "$mgw_class" = lost ]; then mgw_sched_kill term; fi
  return 0
}

# probe's scheduler facts (the grid information service's idea, GRIS): the scheduler's version,
# its partitions or queues with idle/total (Slurm: nodes, sinfo's %F; Grid Engine: slots, qstat -g
# c; PBS: queue names only), and this account's jobs queued and running (from one poll,
# mgw_sched_polled; PBS: the root's jobs). Values are cut to safe bytes; a scheduler that does not
# answer gives sched_reachable=no.
mgw_sched_probe() {
  MGW_SCHED_JOB=$MGW_SCHEDULER
  mgw_need awk
  mgw_pawk=$mgw_found
  mgw_need tr
  mgw_ptr=$mgw_found
  case $MGW_SCHEDULER in
    slurm)
      mgw_pv=$(mgw_sched_cmd sinfo --version 2>/dev/null)
      # shellcheck disable=SC2016
      mgw_pq=$(mgw_sched_cmd sinfo -h -o '%R %F' 2>/dev/null | "$mgw_pawk" '{ split($2, n, "/"); printf "%s%s:%s/%s", sep, $1, n[2], n[4]; sep = "," }') ;;
    sge)
      mgw_pv=$(mgw_sched_cmd qstat -help 2>/dev/null | "$mgw_pawk" 'NR == 1')
      # shellcheck disable=SC2016
      mgw_pq=$(mgw_sched_cmd qstat -g c 2>/dev/null | "$mgw_pawk" 'NR > 2 && NF >= 6 { printf "%s%s:%s/%s", sep, $1, $5, $6; sep = "," }') ;;
    pbs)
      mgw_pv=$(mgw_sched_cmd qstat --version 2>/dev/null | "$mgw_pawk" 'NR == 1')
      # shellcheck disable=SC2016
      mgw_pq=$(mgw_sched_cmd qstat -Q 2>/dev/null | "$mgw_pawk" 'NR > 2 && NF >= 2 { printf "%s%s:-/-", sep, $1; sep = "," }') ;;
  esac
  printf 'sched_version=%s\n' "$(printf '%.80s' "${mgw_pv:-unknown}" | "$mgw_ptr" -c 'A-Za-z0-9 ._=-' '?')"
  printf 'sched_queues=%s\n' "$(printf '%.2000s' "$mgw_pq" | "$mgw_ptr" -c 'A-Za-z0-9._:/,-' '?')"
  if mgw_sched_polled; then
    mgw_nq=0
    mgw_nr=0
    mgw_ifs=$IFS
    IFS=$MGW_NL
    for mgw_l in $mgw_poll; do
      IFS=' '
      # shellcheck disable=SC2086
      set -- $mgw_l
      mgw_sched_class "${2:-}"
      case $mgw_class in
        queued) mgw_nq=$((mgw_nq + 1)) ;;
        running) mgw_nr=$((mgw_nr + 1)) ;;
      esac
      IFS=$MGW_NL
    done
    IFS=$mgw_ifs
    printf 'sched_reachable=yes\nsched_jobs_queued=%s\nsched_jobs_running=%s\n' "$mgw_nq" "$mgw_nr"
  else
    printf 'sched_reachable=no\n'
  fi
}

# On stderr: `mint-gw: sched: job=J id=N state=S reason=R`, for the client's `queued` event.
mgw_sched_report() {
  printf 'mint-gw: sched: job=%s id=%s state=%s reason=%s\n' "$MGW_JOB" "${MGW_SCHED_ID:--}" "${MGW_SCHED_STATE:--}" "${MGW_SCHED_REASON:--}" >&2
}

# logs for a scheduler's job: the runner is on another node, so `tail --pid` cannot watch it.
# A local watcher asks every MGW_SCHED_POLL (2) seconds (one poll of all the account's jobs, and
# looks for the exit file every half second), reports each change of the scheduler's state or
# reason on stderr, and ends when the job has; tail follows the log on the shared file system
# until the watcher is gone, then makes its final read.
mgw_sched_follow_log() {
  mgw_sched_report
  case $MGW_STATE in
    queued | running)
      mgw_need sleep
      mgw_sleep=$mgw_found
      mgw_sched_watch &
      mgw_watcher=$!
      "$mgw_tail" -c +$((MGW_OFFSET + 1)) -s 0.2 --pid="$mgw_watcher" -f -- "$MGW_LOGFILE"
      mgw_trc=$?
      kill "$mgw_watcher" 2>/dev/null
      wait "$mgw_watcher"
      [ "$mgw_trc" = 0 ] || exit 70 ;;
    *)
      "$mgw_tail" -c +$((MGW_OFFSET + 1)) -- "$MGW_LOGFILE" || exit 70 ;;
  esac
  mgw_sched_settle
  mgw_sched_report
  printf 'mint-gw: status: job=%s state=%s exit=%s\n' "$MGW_JOB" "$MGW_STATE" "${MGW_EXIT:--}" >&2
}

mgw_sched_watch() {
  mgw_last="$MGW_SCHED_STATE $MGW_SCHED_REASON"
  mgw_cancel_seen=
  while :; do
    mgw_i=0
    while [ $mgw_i -lt $((MGW_SCHED_POLL * 2)) ] && [ ! -f "$MGW_JOBDIR/exit" ]; do
      # A cancel's marker: ask at once rather than at the next poll (a pending job is gone within
      # the second, and a client waits for this follow only 2 s after its cancel).
      if [ -z "$mgw_cancel_seen" ] && [ -f "$MGW_JOBDIR/cancelled" ]; then
        mgw_cancel_seen=1
        "$mgw_sleep" 0.3
        break
      fi
      "$mgw_sleep" 0.5
      mgw_i=$((mgw_i + 1))
    done
    [ ! -f "$MGW_JOBDIR/exit" ] || return 0
    mgw_job_state
    case $MGW_STATE in queued | running) ;; *) return 0 ;; esac
    if [ "$MGW_SCHED_STATE $MGW_SCHED_REASON" != "$mgw_last" ]; then
      mgw_last="$MGW_SCHED_STATE $MGW_SCHED_REASON"
      mgw_sched_report
    fi
  done
}

# The job's final state once its exit file is in: Slurm shows COMPLETING for a moment after the
# runner's end, and only then whether a time limit or node failure ended it; wait that out for up
# to 5 s. (Grid Engine and PBS say nothing more than the exit file: they are not waited for.)
mgw_sched_settle() {
  mgw_job_state
  [ "$MGW_SCHED_JOB" = slurm ] || return 0
  mgw_i=0
  while [ "$MGW_SCHED_STATE" = COMPLETING ] || [ "$MGW_SCHED_STATE" = RUNNING ]; do
    { [ -n "$MGW_EXIT" ] && [ $mgw_i -lt 25 ]; } || break
    "${mgw_sleep:-sleep}" 0.2
    mgw_i=$((mgw_i + 1))
    mgw_job_state
  done
}

# cancel: the marker first (a runner that has not begun then never runs the program), then the
# scheduler's cancel (mgw_sched_kill), which ends a pending job at once; wait up to --grace seconds
# for the end, then ask for KILL.
mgw_sched_cancel() {
  case $MGW_STATE in queued | running) ;; *) return 0 ;; esac
  : >"$MGW_JOBDIR/cancelled"
  mgw_unlock
  mgw_sched_kill term
  mgw_need sleep
  # Kept apart: mgw_job_state looks up other commands (squeue, env) into mgw_found.
  mgw_csleep=$mgw_found
  mgw_i=0
  while [ $mgw_i -lt $((MGW_GRACE * 2)) ]; do
    mgw_job_state
    case $MGW_STATE in queued | running) ;; *) return 0 ;; esac
    "$mgw_csleep" 0.5
    mgw_i=$((mgw_i + 1))
  done
  mgw_sched_kill kill
  # The job stays COMPLETING while slurmd reaps it (measured: 4.5 s after scancel with KillWait=2,
  # about 5 s with KillWait=5): wait up to 10 s more for its end, so that cancel reports it.
  mgw_i=0
  while [ $mgw_i -lt 20 ]; do
    mgw_job_state
    case $MGW_STATE in queued | running) ;; *) return 0 ;; esac
    "$mgw_csleep" 0.5
    mgw_i=$((mgw_i + 1))
  done
}

# The scheduler's side: batch.sh execs this on the compute node with the job dir. The program
# runs at most once, and not at all if the job was cancelled before it began.
mgw_sched_run_job() {
  mgw_jobdir=$1
  case $mgw_jobdir in "$MGW_ROOT"/*) ;; *) exit 70 ;; esac
  mgw_is_job_name "${mgw_jobdir##*/}" || exit 70
  MGW_JOBDIR=$mgw_jobdir
  [ ! -f "$mgw_jobdir/cancelled" ] || exit 0
  "$MGW_MKDIR" -- "$mgw_jobdir/ran" 2>/dev/null || exit 0
  MGW_SCHED_JOB=slurm
  if mgw_read_file "$mgw_jobdir/sched"; then
    case $mgw_value in slurm | sge | pbs) MGW_SCHED_JOB=$mgw_value ;; esac
  fi
  # The job's id as the scheduler gives it to the job, should the gateway have died before
  # recording it; and the variables the program gets from the scheduler (the job id, the nodes and
  # CPUs it was given: what srun, mpirun and their kin read), before the site's and client's own.
  case $MGW_SCHED_JOB in
    slurm) mgw_own_id=${SLURM_JOB_ID:-} ;;
    sge) mgw_own_id=${JOB_ID:-} ;;
    pbs) mgw_own_id=${PBS_JOBID:-} ;;
  esac
  if [ ! -f "$mgw_jobdir/sched_id" ] && mgw_sched_id_ok "$mgw_own_id"; then
    mgw_write_atomic "$mgw_jobdir/sched_id" "$mgw_own_id"
  fi
  mgw_need awk
  # shellcheck disable=SC2016
  mgw_argv=$("$mgw_found" '
    BEGIN { digits = "0123456789abcdef" }
    {
      out = ""
      for (i = 1; i < length($0); i += 2)
        out = out sprintf("\\%03o", (index(digits, substr($0, i, 1)) - 1) * 16 + index(digits, substr($0, i + 1, 1)) - 1)
      print out
    }' <"$mgw_jobdir/argv") || exit 70
  set --
  mgw_ifs=$IFS
  IFS=$MGW_NL
  set -f
  for mgw_l in $mgw_argv; do
    IFS=$mgw_ifs
    mgw_decode "$mgw_l"
    set -- "$@" "$mgw_decoded"
    IFS=$MGW_NL
  done
  IFS=$mgw_ifs
  [ $# -ge 2 ] || exit 70
  mgw_umask=$1
  shift
  mgw_need env
  mgw_slurm_env=$("$mgw_found")
  IFS=$MGW_NL
  for mgw_l in $mgw_slurm_env; do
    IFS=$mgw_ifs
    case $MGW_SCHED_JOB:$mgw_l in
      slurm:SLURM_*=* | pbs:PBS_*=* | sge:JOB_ID=* | sge:JOB_NAME=* | sge:NSLOTS=* | sge:NHOSTS=* | sge:PE_HOSTFILE=* | sge:QUEUE=*)
        case ${mgw_l%%=*} in *[!A-Z0-9_]*) ;; *) set -- "$mgw_l" "$@" ;; esac ;;
    esac
    IFS=$MGW_NL
  done
  IFS=$mgw_ifs
  # The start request's audit id (its req=), as recorded at submission: pid.starttime digits.
  mgw_req=-
  if mgw_read_file "$mgw_jobdir/req"; then
    case $mgw_value in '' | *[!0-9.]*) ;; *) mgw_req=$mgw_value ;; esac
  fi
  mgw_run_job "$mgw_jobdir" "$mgw_umask" "$mgw_req" "$@"
  # The scheduler's own record (FAILED, ExitCode=3:0) then agrees with the exit file.
  exit "$mgw_rc"
}

# ---------------------------------------------------------------------------------------------------
# The detached runner: cwd is the work dir, stdin is /dev/null, stdout and stderr go to the log, the
# environment is exactly the one start built and the umask the account's. Its arguments:
#   --run-job JOBDIR UMASK REQ NAME=VALUE... PROGRAM ARG...
# (REQ: the start request's audit id.) TERM is ignored here so that the runner outlives a cancelled
# program and records its status and its audit line; KILL (cancel's last resort) ends it too, and
# then `cancelled` alone tells the story, and cancel writes the program's line.

mgw_run_job() {
  mgw_jobdir=$1
  mgw_umask=$2
  MGW_REQ=$3
  shift 3
  MGW_JOB=${mgw_jobdir##*/}
  trap '' TERM HUP INT
  cd -- "$mgw_jobdir/${mgw_jobdir##*/}" || exit 70
  mgw_need env
  # The program gets default signal handling back (an ignored signal would be inherited). env -i
  # takes the NAME=VALUE words and then runs PROGRAM (an absolute path without '=') with its args.
  ( trap - TERM HUP INT; umask "$mgw_umask" && exec "$mgw_found" -i "$@" ) \
    </dev/null >>"$mgw_jobdir/remote_program_exec.log" 2>&1
  mgw_rc=$?
  # What the program left running in its group ends with it: TERM now (the runner ignores it), KILL
  # once the exit status is on disk. A job that reads as ended must hold still, since a download
  # stages its files from the work dir (a leftover could swap them for symlinks meanwhile: red-team
  # finding). Under a scheduler the runner leads no group of ours: the scheduler ends the job's
  # processes.
  [ "$MGW_MODE" = sched ] || kill -TERM 0 2>/dev/null
  # The program's end in the audit before its exit status is on disk: every request that sees the
  # job ended (status, a run or logs that found it exited, take) then comes after it in the log.
  # (Written after it, the line could follow the outcome of a run that found a quick program
  # already ended: seen in test/gateway/limits.test.ts.) Best effort: the program has run.
  if [ -f "$mgw_jobdir/cancelled" ]; then mgw_outcome=cancelled; else mgw_outcome "$mgw_rc"; fi
  mgw_audit "outcome=$mgw_outcome exit=$mgw_rc" program || :
  printf '%s\n' "$mgw_rc" >"$mgw_jobdir/exit.tmp" && "$MGW_MV" -f -- "$mgw_jobdir/exit.tmp" "$mgw_jobdir/exit"
  [ "$MGW_MODE" != sched ] || return 0
  # This runner leads the group, so it is provably ours. A cancelled one ends with it; otherwise
  # the runner spares itself (a runner killed by a signal is reported by a bash gateway still
  # following the log, "Killed" on the client's stderr) and KILLs what ignored the TERM.
  [ ! -f "$mgw_jobdir/cancelled" ] || kill -KILL 0
  if mgw_which pgrep; then
    for mgw_p in $("$mgw_found" -g "$$"); do
      [ "$mgw_p" = "$$" ] || kill -KILL "$mgw_p" 2>/dev/null
    done
  fi
}

# ---------------------------------------------------------------------------------------------------

main "$@"
