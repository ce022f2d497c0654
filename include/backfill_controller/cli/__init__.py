"""``backfill``: Airflow 2's ``airflow dags backfill`` command line, run by the backfill controller.

The command turns Airflow 2 style flags into the controller's conf, triggers
``backfill_controller`` over the REST API, shows live progress and prints the per-date table::

    backfill sales_pipeline -s 2024-01-01 -e 2024-10-26

Two sub-commands read the backfills the Backfills page shows, without starting anything::

    backfill status RUN_ID          # one backfill: phase, counts and every date
    backfill list --dag-id sales    # the backfills, newest first

Four operate one (:mod:`backfill_controller.domain.controls`)::

    backfill pause RUN_ID | resume RUN_ID | cancel RUN_ID | rerun-failed RUN_ID

``python -m backfill_controller.cli`` runs it. The package reads the pure domain
(:mod:`backfill_controller.domain`: the request contract, a backfill's state, the report's table)
and the controller's names (:mod:`backfill_controller.contract`), and is not part of either; it
imports nothing of the worker or server side:

* :mod:`backfill_controller.cli.flags`: the command lines, each long option also in its underscore
  spelling, and which command an argument list runs; :mod:`backfill_controller.cli.help`: their
  ``--help``;
* :mod:`backfill_controller.cli.conf`: a parsed command line as the controller's conf;
* :mod:`backfill_controller.cli.connection`: where Airflow is and who logs in;
* :mod:`backfill_controller.cli.progress`: the progress line, its live display, and the per-date
  table at the end;
* :mod:`backfill_controller.cli.views`: what ``status``, ``list`` and the controls print;
* :mod:`backfill_controller.cli.commands`: running each command, and its exit status (:func:`main`).

Everything except the ``run_*`` functions, :func:`backfill_controller.cli.progress.follow` and
``main`` is pure (argument parsing, the conf, connection settings, progress arithmetic and
formatting) and imports neither Airflow nor an HTTP library, so the command starts in a fraction
of a second and the parts are unit-tested without a server. The HTTP calls live in
:mod:`backfill_controller.client.controller_api`.
"""
