"""Airflow DAGs of the Backfill Controller (package airflow-backfill-controller): the same file a
deployment adds."""

from backfill_controller.dags import catchup_dag, controller_dag

backfill_controller, backfill_catchup = controller_dag(), catchup_dag()
