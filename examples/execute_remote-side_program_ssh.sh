#!/bin/sh
# A sample remote-side program (MInt's "program C"). Contract, as in MInt's SSH method:
# - the inputs are the files in the current directory (a fresh work dir per job);
# - whatever this script leaves in the current directory goes back to MInt;
# - stdout and stderr become remote_program_exec.log;
# - exit status 0 means success.
# Replace the body with the real calculation (a solver call, a qsub and wait, ...). Delete anything
# that must not leave this machine before exiting; the gateway's --export can also restrict it.
set -eu

echo "job ${MINT_JOB_ID:-?} on $(hostname) in $(pwd)"
echo "arguments: $*"
echo "inputs:"
for f in *; do
  [ -e "$f" ] || continue
  printf '  %s (%s bytes)\n' "$f" "$(wc -c <"$f" 2>/dev/null || echo dir)"
done

# The "calculation": count lines and words of every input file.
mkdir -p results
for f in *; do
  [ -f "$f" ] || continue
  printf '%s %s\n' "$(wc -l <"$f")" "$f"
done >results/line_counts.txt
echo "wrote results/line_counts.txt"
