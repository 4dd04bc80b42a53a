from tests.train.conftest import tiny_model_dir  # noqa: F401 - the shared tiny model, for end-to-end runs
