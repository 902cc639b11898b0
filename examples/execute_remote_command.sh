#!/bin/sh
# execute_remote_command.sh: a drop-in for MInt's program B (execute_remote_command.sample.sh) with
# the same name and contract: program A has put the module's inputs in the current directory under
# fixed names (often as symlinks); this sends them to the external computer, runs the site's
# program there, brings every result back into the current directory and exits 0, or prints the
# remote side's log between MInt's markers and exits 1. Set the three values below as in MInt's
# template; the host is a mint-ssh-exec host profile or an ~/.ssh/config alias.
#
# What it does not do any more: 3+N logins, a /tmp/<uuid> left behind on the site, exit statuses
# ignored, rsync of everything in the job dir back (the site's --export decides).

host=${MINT_REMOTE_HOST:-rme-u-tokyo}
infiles="reduction_area.dat tesile_strength.dat yeild_strength.dat"
solver=abaqus

mint_ssh_exec=${MINT_SSH_EXEC:-mint-ssh-exec}

set --
for item in $infiles; do set -- "$@" "$item"; done
# MInt's solver_execute.log lines in its templates' format, where MInt keeps them (never created).
if [ -n "${MISYSTEM_SITEID:-}" ] && [ -d "/home/misystem/assets/workflow/$MISYSTEM_SITEID/solver_logs" ]; then
  set -- "$@" --mint-log-site --mint-log-format template --solver "$solver"
fi

if "$mint_ssh_exec" run "$host" "$@" -o . --quiet; then
  exit 0
fi
echo "---------- remote side log ----------------"
cat remote_program_exec.log 2>/dev/null
echo "---------- remote side log ----------------"
exit 1
