"""docker-compose.yml runs what `linewatch up` runs: one service per component, the sim opt-in."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.upplan import COMPONENTS

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_compose_has_every_up_component_and_the_sim_behind_a_profile() -> None:
    yaml = pytest.importorskip("yaml")  # PyYAML comes with the dev tools, not the runtime
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    commands = {tuple(svc.get("command") or ()): name for name, svc in services.items()}
    for comp in COMPONENTS:
        if comp.only_embedded:  # the embedded broker: compose runs Mosquitto instead
            continue
        found = [c for c in commands if c[: len(comp.args)] == comp.args]
        assert found, f"no compose service runs `linewatch {' '.join(comp.args)}`"
        svc = services[commands[found[0]]]
        assert ("profiles" in svc) == comp.opt_in, commands[found[0]]
    sim = services["sim"]
    assert sim["profiles"] == ["sim"]
    assert sim["environment"]["LINEWATCH_MQTT_URL"] == "mqtt://mosquitto:1883"
    assert set(sim["depends_on"]) == {"mosquitto"}  # a line needs the broker, not the DB
    # like `up --sim`: it publishes once the processes it feeds listen
    assert sim["command"][sim["command"].index("--wait-for") + 1] == "store,dispatch,edge"
