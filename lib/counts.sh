# shellcheck shell=bash
# Counting tests in the output of the tools that ran them (sourced, not
# run); shared by test/run-tests and test/container/run.
#
# Provides (functions only; nothing runs at source time), each reading one
# log file and printing one line:
#   count_pg_regress LOG    -> "passed failed"   (pg_regress, pg_isolation_regress)
#   count_prove LOG         -> "passed failed failed_script..."   (prove)
#   count_summary_line LOG  -> "passed failed"   (a "N passed, N failed" line)
# Read a result with e.g.  read -r p f < <(count_pg_regress "$log")
# None of them knows the tool's exit status: callers count a non-zero one
# with no failure counted as one failure.
#
# Expects: perl and awk.

# pg_regress and pg_isolation_regress output.  PG15 prints
#   "test foo    ... ok    12 ms", "     foo ... FAILED" (parallel group),
#   "... failed (ignored)"
# PG16+ prints TAP: "ok 1 - foo  12 ms", "not ok 2 + bar", "... # (ignored)".
# Ignored failures count as passed, as pg_regress itself does.
count_pg_regress() { # log -> "passed failed"
	perl -ne '
		if (/^\s*(?:test\s+)?\S+\s+\.\.\.\s+(ok|FAILED|failed \(ignored\))/) {
			$1 eq "FAILED" ? $f++ : $p++;
		} elsif (/^(not )?ok\s+\d+\s+[-+]\s+\S/) {
			($1 && !/#\s*\(ignored\)/) ? $f++ : $p++;
		}
		END { printf "%d %d\n", $p, $f }' "$1"
}

# prove's summary: "Files=2, Tests=17, ..." plus, for every script that did
# not pass, a "Test Summary Report" entry
#   "test/t/001_x.pl (Wstat: 256 [(exited 1)] Tests: 5 Failed: 2)"
#   "  Parse errors: No plan found in TAP output"
# passed = Tests - failed subtests.  Tests a bad plan promised but never ran
# count as failed (as prove's own "Failed 3/5 subtests" does), and a script
# that failed without any of that (died, bad exit status, no plan) counts as
# one failure.
count_prove() { # log -> "passed failed failed_script..."
	perl -ne '
		sub flush {
			return unless defined $name;
			my $n = $subfail + $missing;
			$n = 1 if $n == 0 && ($wstat != 0 || $parse);
			if ($n > 0) { $f += $n; push @bad, $name }
			undef $name;
		}
		if (/^(\S.*?)\s+\(Wstat: (\d+)\b.*\bTests: \d+ Failed: (\d+)\)\s*$/) {
			flush();
			($name, $wstat, $subfail, $parse, $missing) = ($1, $2, $3, 0, 0);
			$allsub += $3;
		} elsif (defined $name && /^\s+Parse errors:/) {
			$parse = 1;
			$missing = $1 - $2 if /planned (\d+) tests but ran (\d+)/ && $1 > $2;
		} elsif (/^Files=\d+, Tests=(\d+)/) {
			flush();
			$tests = $1;
		} elsif (!/^\s/) {
			flush();
		}
		END {
			flush();
			printf "%d %d %s\n", $tests - $allsub, $f, join(" ", @bad);
		}' "$1"
}

# The last line that is just "N passed, N failed" (surrounding blanks
# allowed), as test/run-tests and test/container/run end.  No such line
# (the script died or never said how it went): "0 1".
count_summary_line() { # log -> "passed failed"
	awk '/^[[:space:]]*[0-9]+ passed, [0-9]+ failed[[:space:]]*$/ { p = $1; f = $3; seen = 1 }
		END { if (seen) printf "%d %d\n", p, f; else print "0 1" }' "$1"
}
