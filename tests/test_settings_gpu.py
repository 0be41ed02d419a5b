"""The GPU telemetry settings (README "GPU telemetry"): defaults, environment, bad values."""

import pytest
from pydantic import ValidationError

from webapp.settings import Settings


@pytest.mark.parametrize(
    ("env", "field", "expected"),
    [
        ({}, "gpu_prometheus_url", ""),
        ({"GPU_PROMETHEUS_URL": "http://127.0.0.1:9090/api/v1/query"}, "gpu_prometheus_url",
         "http://127.0.0.1:9090/api/v1/query"),
        ({}, "dcgm_exporter_namespace", "gpu-operator"),
        ({"DCGM_EXPORTER_NAMESPACE": "gke-managed-system"}, "dcgm_exporter_namespace",
         "gke-managed-system"),
        ({}, "dcgm_exporter_service", "nvidia-dcgm-exporter"),
        ({"DCGM_EXPORTER_SERVICE": "dcgm-exporter"}, "dcgm_exporter_service", "dcgm-exporter"),
        ({}, "dcgm_exporter_port", "9400"),
        ({"DCGM_EXPORTER_PORT": "metrics"}, "dcgm_exporter_port", "metrics"),
        ({}, "gpu_telemetry_timeout_s", 5.0),
        ({"GPU_TELEMETRY_TIMEOUT_S": "1.5"}, "gpu_telemetry_timeout_s", 1.5),
        ({}, "gpu_temperature_warn_c", 85.0),
        ({"GPU_TEMPERATURE_WARN_C": "80"}, "gpu_temperature_warn_c", 80.0),
    ],
)  # fmt: skip
def test_gpu_settings_from_env(monkeypatch, env, field, expected):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert getattr(Settings(), field) == expected


@pytest.mark.parametrize(
    "env",
    [
        {"GPU_PROMETHEUS_URL": "monitoring.example/query"},  # no scheme
        {"GPU_PROMETHEUS_URL": "http://a b"},
        {"DCGM_EXPORTER_NAMESPACE": "Bad_NS"},
        {"DCGM_EXPORTER_SERVICE": "svc/../x"},
        {"DCGM_EXPORTER_PORT": "94:00"},
        {"DCGM_EXPORTER_PORT": ""},
        {"GPU_TELEMETRY_TIMEOUT_S": "0"},
        {"GPU_TELEMETRY_TIMEOUT_S": "600"},
        {"GPU_TEMPERATURE_WARN_C": "-5"},
        {"GPU_TEMPERATURE_WARN_C": "hot"},
    ],
)
def test_gpu_settings_reject_bad_values(monkeypatch, env):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValidationError):
        Settings()
