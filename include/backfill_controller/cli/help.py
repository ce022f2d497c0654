"""The ``--help`` of each command: what it does, how it differs from Airflow 2, examples and exit
statuses. :mod:`backfill_controller.cli.flags` builds the parsers that print them."""

from __future__ import annotations

from backfill_controller.cli.connection import DEFAULT_API_URL
from backfill_controller.contract import CONTROLLER_DAG_ID

DESCRIPTION = f"""\
Run a backfill of DAG_ID: trigger the {CONTROLLER_DAG_ID} DAG over the REST API, show its
progress, and print what happened to every logical date.

Speaks Airflow 2's `airflow dags backfill` flags. Differences:
  * -s DATE alone (no -e) backfills exactly that one logical date; it must be on the DAG's
    schedule (the error names the nearest ones). Same for -e alone and for -D DATE (older
    runbooks' spelling). -s and -e form an inclusive window of logical dates, like Airflow 2.
  * Dates that already have a run are left alone unless --reset-dagruns (re-run every date)
    or --rerun-failed-tasks (re-run dates whose run failed). Queued or running runs are never
    touched.
  * -t REGEX re-runs only the matching tasks of existing runs, and by default their upstream
    tasks too, as in Airflow 2; -i (--ignore-dependencies) runs only the matching tasks.
  * The backfill continues past failed dates (--continue-on-failures is the default); use
    --max-failed-dates 1 to stop starting new dates after the first failure.
  * --dry-run reports what would happen to each date and changes nothing.

Sub-commands, which start nothing:
  backfill status RUN_ID     one backfill: its phase, counts and every date (backfill status -h)
  backfill list [--dag-id D] [--state PHASE]   the backfills, newest first (backfill list -h)
Sub-commands that operate one backfill (backfill pause -h):
  backfill pause RUN_ID      no new date starts; runs already queued or running finish
  backfill resume RUN_ID     dates start again where it stopped
  backfill cancel RUN_ID     nothing new starts; its queued runs are marked failed
  backfill rerun-failed RUN_ID   a new backfill of exactly the dates that ended failed
A first argument naming a sub-command names it unless the command line gives dates
(-s, -e, --dates or -D): a backfill always needs dates and a sub-command takes none, so
`backfill list -s 2024-01-01` still backfills a DAG named `list`.

Airflow: --api-url/--username/--password, else BACKFILL_API_URL/BACKFILL_API_USERNAME/
BACKFILL_API_PASSWORD, else the connection URI in AIRFLOW_CONN_AIRFLOW_API
(e.g. http://admin:secret@localhost:8080), else {DEFAULT_API_URL}. The password is only
sent to POST /auth/token and never printed.

Exit status: 0 success (or dry run planned); 1 the backfill failed or the controller refused
the request; 2 bad command line or request refused at trigger (nothing started); 3 Airflow
unreachable or login refused; 130 interrupted (the controller run keeps going)."""

EPILOG = """\
examples:
  # first load of a new pipeline: every day from Jan 1 to Oct 26, 2024 (inclusive)
  backfill sales_pipeline -s 2024-01-01 -e 2024-10-26

  # re-run one task (not its upstream tasks) for a few days, even where it succeeded
  backfill api_ingestion_dag -s 2024-03-10 -e 2024-03-12 -t api_ingestion_task -i --reset-dagruns

  # re-run the one failed date of a DAG (older runbooks: -D 2024-06-05 --reset_dagruns)
  backfill data_transformation_dag -s 2024-06-05 --reset-dagruns

  # see the plan first; trigger and return at once, printing the controller's run id
  backfill sales_pipeline -s 2024-01-01 -e 2024-01-31 --dry-run
  backfill sales_pipeline --dates 2024-01-05,2024-01-10 --reason "late files" --no-wait

  # how is it going? which backfills of sales_pipeline failed?
  backfill status manual__2024-11-24T08:08:58.461667+00:00
  backfill list --dag-id sales_pipeline --state failed

Every long flag also takes its underscore spelling, as Airflow 1.10 wrote them (--reset_dagruns,
--start_date, --task_regex, --dry_run, ...); this help lists the hyphen spellings only."""

STATUS_DESCRIPTION = f"""\
Print one backfill as the Backfills page shows it: its phase, target, window and counts, then
one line per logical date (logical_date, action, state, run_id, why). RUN_ID is the run id of
the {CONTROLLER_DAG_ID} run that received the request (`backfill list` shows them). Starts nothing.

Exit status: 0 the backfill succeeded, or the dry run was planned; 1 it failed or was cancelled;
2 bad command line, or no backfill has that run id; 3 it has not finished yet (queued,
planning, running or cancelling: a script can wait while the status is 3); 4 Airflow
unreachable or login refused (not 3, so such a loop stops)."""

LIST_DESCRIPTION = f"""\
List the backfills ({CONTROLLER_DAG_ID} runs), newest first, one line each: run_id, phase, target
DAG, window, dates finished/to run (or planned, for a dry run), who triggered it. The total and
how to see the next page go to stderr. Starts nothing.

Exit status: 0 listed (also when none match); 2 bad command line; 3 Airflow unreachable or login
refused."""

CONTROL_DESCRIPTION = f"""\
Operate one backfill. RUN_ID is the run id of the {CONTROLLER_DAG_ID} run that received the
request (`backfill list` shows them).
  pause         no new date starts; runs already queued or running finish; the time paused does
                not count against its timeout_minutes
  resume        dates start again where it stopped
  cancel        as marking the controller run failed: nothing new starts, in any segment; its
                queued runs are marked failed; runs already running finish
  rerun-failed  start a new backfill of exactly the dates that ended failed (same target, task
                selection and conf; reprocess failed); prints the new run id
Each needs the rights Airflow would ask for the same change by hand (see the README).

Exit status: 0 done; 1 refused: it does not fit the backfill's phase (pause a finished one,
resume a running one), or a right is missing; 2 bad command line, or no backfill has that run
id; 3 Airflow unreachable or login refused."""

UNDERSCORES_ACCEPTED = "Every long flag also takes its underscore spelling (--dag_id, --api_url, ...)."
