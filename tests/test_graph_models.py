"""The small Graph models (shared/adapters/graph_models.py) read the same values as msgraph's full models from
the same JSON, in a fresh process that never imports msgraph's model graph (the cost they exist to avoid)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from kiota_serialization_json.json_parse_node_factory import JsonParseNodeFactory

from shared.adapters.graph_models import SelectedApplication, SelectedServicePrincipal

ROOT = Path(__file__).resolve().parent.parent
APPLICATION = {"id": "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a", "appId": "2d4e6f80-1a2b-4c3d-9e8f-a1b2c3d4e5f6",
               "displayName": "cyclecloud-sp", "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#x",
               "passwordCredentials": [{"keyId": "e1d2c3b4-a596-4788-9a0b-1c2d3e4f5a6b", "hint": "Abc",
                                        "displayName": "initial", "startDateTime": "2026-01-01T00:00:00Z",
                                        "endDateTime": "2027-01-01T00:00:00Z", "customKeyIdentifier": None}]}


def _parse(model: Any, body: Any) -> Any:
    node = JsonParseNodeFactory().get_root_parse_node("application/json", json.dumps(body).encode())
    return node.get_object_value(model)


def test_the_small_models_read_what_the_full_ones_read() -> None:
    from msgraph.generated.models.application import Application
    from msgraph.generated.models.service_principal import ServicePrincipal

    small, full = _parse(SelectedApplication, APPLICATION), _parse(Application, APPLICATION)
    for name in ("id", "app_id", "display_name"):
        assert getattr(small, name) == getattr(full, name)
    (mine,), (theirs,) = small.password_credentials, full.password_credentials
    for name in ("key_id", "hint", "display_name", "start_date_time", "end_date_time"):
        assert getattr(mine, name) == getattr(theirs, name)
    principal = {"id": "4c3b2a19-0817-4f6e-9d5c-4b3a29180716", "appId": APPLICATION["appId"], "displayName": "sp"}
    small_sp, full_sp = _parse(SelectedServicePrincipal, principal), _parse(ServicePrincipal, principal)
    assert (small_sp.id, small_sp.app_id, small_sp.display_name) == (
        full_sp.id, full_sp.app_id, full_sp.display_name)


def test_parsing_a_small_model_leaves_msgraphs_model_graph_unimported() -> None:
    code = ("import json, sys\n"
            "from kiota_serialization_json.json_parse_node_factory import JsonParseNodeFactory\n"
            "from shared.adapters.graph_models import SelectedApplication\n"
            f"body = json.dumps({APPLICATION!r}).encode()\n"
            "app = JsonParseNodeFactory().get_root_parse_node('application/json', body).get_object_value("
            "SelectedApplication)\n"
            "assert app.password_credentials[0].hint == 'Abc'\n"
            "print(sum(1 for m in sys.modules if m.startswith('msgraph.generated.models.')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.strip()) < 50  # msgraph's full Application parse imports over 1,000 of them
