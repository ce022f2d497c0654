"""The plugin's own tables of the metadata database (:mod:`.tables`) and their Alembic migrations
(``migrations/``), run by ``airflow db migrate`` through :class:`.manager.BackfillControllerDBManager`."""
