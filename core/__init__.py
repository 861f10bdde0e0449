"""The ground floor: what every stage uses (settings, Kafka helpers, logging, secrets,
version, jar resolution). Nothing here imports a stage, the CLI or the platform manager;
the import contract in ``pyproject.toml`` checks it."""
