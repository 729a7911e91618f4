"""Shared fixtures: the tiny offline speech models and a speech stack over them (built once per run)."""

import os

import pytest

os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def speech_models(tmp_path_factory):
    from tests.speech_models import session_speech_models
    return session_speech_models(tmp_path_factory)


@pytest.fixture(scope="session")
def speech_stack(tmp_path_factory):
    from tests.speech_models import session_speech_stack
    return session_speech_stack(tmp_path_factory)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from a second torch thread and, on a busy 2-core machine, run up
    to 10x slower with one (measured); modules opt in with pytest.mark.usefixtures."""
    from tests.speech_models import torch_threads
    with torch_threads(1):
        yield
