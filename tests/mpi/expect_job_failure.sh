#!/bin/sh
# Runs an MPI job that must fail: passes when the command exits non-zero
# within its time limit and its output matches the extended regular
# expression $1 (e.g. the dead rank named by mpirun).
#   expect_job_failure.sh REGEX COMMAND...
regex=$1
shift
out=$("$@" 2>&1)
rc=$?
printf '%s\n' "$out"
echo "exit status: $rc"
if [ "$rc" -eq 0 ]; then
    echo "FAIL: the job succeeded"
    exit 1
fi
if ! printf '%s\n' "$out" | grep -Eq "$regex"; then
    echo "FAIL: no line matches: $regex"
    exit 1
fi
echo "PASS: the job failed as it should"
