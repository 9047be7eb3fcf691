"""Topology: TOML format, validation, changes, and a dumps/loads round trip over random ones."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelgrid.routing import topology as topo
from modelgrid.routing.topology import Deployment, Region, Replica, Topology, TopologyError

EXAMPLE = """
gateway_region = "ap-southeast-1"

[[regions]]
id = "ap-southeast-1"
name = "Singapore"
jurisdiction = "SG"
lat = 1.29
lon = 103.85

[[regions]]
id = "eu-west-1"
name = "Ireland"
jurisdiction = "IE"
lat = 53.35
lon = -6.26

[[regions]]
id = "us-east-1"
name = "Virginia"
jurisdiction = "US"

[latency_ms]
"ap-southeast-1" = { "us-east-1" = 220.0 }

[[deployments]]
model = "m"
region = "ap-southeast-1"
[[deployments.replicas]]
kind = "upstream"
base_url = "http://127.0.0.1:9001/v1"
max_concurrency = 4
[[deployments.replicas]]
kind = "local"

[[deployments]]
model = "m"
region = "eu-west-1"
[[deployments.replicas]]
id = "eu-1"
base_url = "http://127.0.0.1:9002/v1"
upstream_model = "qwen"
"""


def test_loads_the_documented_format() -> None:
    t = topo.loads(EXAMPLE)
    assert t.gateway_region == "ap-southeast-1"
    assert [r.id for r in t.regions] == ["ap-southeast-1", "eu-west-1", "us-east-1"]
    sg = t.deployment("m", "ap-southeast-1")
    assert sg is not None
    assert [(r.id, r.kind) for r in sg.replicas] == [
        ("ap-southeast-1/m/0", "upstream"),
        ("ap-southeast-1/m/1", "local"),
    ]
    assert sg.replicas[0].max_concurrency == 4
    eu = t.deployment("m", "eu-west-1")
    assert eu is not None and eu.replicas[0].upstream_model == "qwen"
    assert t.models() == ["m"]


def test_latency_configured_symmetric_distance_fallback_and_unknown() -> None:
    t = topo.loads(EXAMPLE)
    assert t.latency("ap-southeast-1", "ap-southeast-1") == 0.0
    assert t.latency("us-east-1", "ap-southeast-1") == 220.0  # either direction
    sg_ie = t.latency("ap-southeast-1", "eu-west-1")  # ~11,000 km great circle
    assert sg_ie is not None and 100 < sg_ie < 130
    assert t.latency("eu-west-1", "us-east-1") is None  # no coordinates for us-east-1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[regions]]\nid = "A"\n', r"^regions\[0\]\.id: .*pattern"),
        ('[[regions]]\nid = "a"\n[[regions]]\nid = "a"\n', r"^regions\[1\]\.id: .*used twice"),
        (
            '[[regions]]\nid = "a"\n[[deployments]]\nmodel = "m"\nregion = "b"\n'
            '[[deployments.replicas]]\nkind = "local"\n',
            r"^deployments\[0\]\.region: unknown region 'b'",
        ),
        (
            '[[regions]]\nid = "a"\n[[deployments]]\nmodel = "m"\nregion = "a"\n'
            '[[deployments.replicas]]\nkind = "upstream"\n',
            r"^deployments\[0\]\.replicas\[0\]: an upstream replica needs an http\(s\) base_url",
        ),
        (
            '[[regions]]\nid = "a"\n[[deployments]]\nmodel = "m"\nregion = "a"\n',
            r"^deployments\[0\]\.replicas: Field required",
        ),
        (
            '[[regions]]\nid = "a"\n[[deployments]]\nmodel = "m"\nregion = "a"\n'
            '[[deployments.replicas]]\nkind = "local"\nbase_url = "http://h/v1"\n',
            r"^deployments\[0\]\.replicas\[0\]: a local replica has no base_url",
        ),
        (
            '[[regions]]\nid = "a"\n[[deployments]]\nmodel = "m"\nregion = "a"\n'
            '[[deployments.replicas]]\nid = "r"\nkind = "local"\n'
            '[[deployments]]\nmodel = "n"\nregion = "a"\n'
            '[[deployments.replicas]]\nid = "r"\nbase_url = "http://h/v1"\n',
            r"^deployments\[1\]\.replicas\[0\]\.id: 'r' is used twice",
        ),
        (
            '[[regions]]\nid = "a"\n[[regions]]\nid = "b"\n'
            '[[deployments]]\nmodel = "m"\nregion = "a"\n[[deployments.replicas]]\nkind = "local"\n'
            '[[deployments]]\nmodel = "m"\nregion = "b"\n[[deployments.replicas]]\nkind = "local"\n',
            r"^deployments\[1\]\.replicas\[0\]\.kind: at most one local",
        ),
        ('[[regions]]\nid = "a"\nfoo = 1\n', r"^regions\[0\]\.foo: unknown key"),
        ("colour = 1\n", r"^colour: unknown key"),
        ('gateway_region = "x"\n[[regions]]\nid = "a"\n', r"^gateway_region: 'x' is not"),
        ("[[regions]\n", "invalid TOML"),
        ('[[regions]]\nid = "a"\nlat = 91\n', r"^regions\[0\]\.lat: .*90 \(got 91\)"),
        ('[[regions]]\nid = "a"\nlat = "1.5"\n', r"^regions\[0\]\.lat: "),  # no coercion
        ('[[regions]]\nid = "a"\nenabled = "yes"\n', r"^regions\[0\]\.enabled: "),
        ('[[regions]]\nid = "a"\n[latency_ms]\na = { b = 1.0 }\n', r"^latency_ms\.a\.b: unknown"),
        ('[[regions]]\nid = "a"\n[latency_ms]\na = { a = -1.0 }\n', r"^latency_ms\.a\.a: "),
        ('[latency_ms."a\\nb"]\nc = 1.0\n', r"^latency_ms\.'a\\nb': "),  # odd keys: one line
        *(
            (f'[[regions]]\nid = "a"\njurisdiction = "{code}"\n', r"^regions\[0\]\.jurisdiction: ")
            for code in (" IE", "I E", "X", "\u00df", "IE\\n", "--", "-IE", "EU-", "A" * 17)
        ),
    ],
)
def test_invalid_topologies_are_refused_with_a_reason(text: str, message: str) -> None:
    """One line that names the field (``regions[1].id: …``), never a pydantic dump."""
    with pytest.raises(TopologyError, match=message) as caught:
        topo.loads(text)
    assert "\n" not in str(caught.value) and "pydantic" not in str(caught.value)


def test_jurisdictions_are_upper_cased_codes() -> None:
    t = topo.loads('[[regions]]\nid = "a"\njurisdiction = "us-ca"\n[[regions]]\nid = "b"\n')
    assert [r.jurisdiction for r in t.regions] == ["US-CA", ""]
    with pytest.raises(TopologyError, match=r"^regions\[0\]\.jurisdiction: 'de' is not a code"):
        Topology((Region("a", jurisdiction="de"),))  # built in code: must already be a code


def test_changes_return_new_validated_topologies() -> None:
    t = topo.default_topology(["m"])
    assert [d.key for d in t.deployments] == [("m", "local")]
    t2 = t.with_region(Region("eu-west-1", "Ireland", "IE"))
    t3 = t2.with_deployment(
        Deployment("m", "eu-west-1", (Replica("", "upstream", "http://h:1/v1"),))
    )
    assert t3.deployment("m", "eu-west-1").replicas[0].id == "eu-west-1/m/0"  # type: ignore[union-attr]
    assert t.deployment("m", "eu-west-1") is None  # the original is untouched
    with pytest.raises(TopologyError, match="still has deployments"):
        t3.without_region("eu-west-1")
    t4 = t3.without_deployment("m", "eu-west-1").without_region("eu-west-1")
    assert t4 == t
    with pytest.raises(TopologyError):
        t3.with_deployment(Deployment("m", "nowhere", ()))


def test_with_local_models_adds_only_models_deployed_nowhere() -> None:
    t = topo.loads(EXAMPLE)
    t2 = topo.with_local_models(t, ["m", "other"])
    assert t2.deployment("m", "ap-southeast-1") == t.deployment("m", "ap-southeast-1")
    other = t2.deployment("other", "ap-southeast-1")
    assert other is not None and other.replicas[0].kind == "local"


def test_save_and_load_a_file(tmp_path: Path) -> None:
    t = topo.loads(EXAMPLE)
    path = tmp_path / "sub" / "topology.toml"
    topo.save(t, path)
    assert topo.load(path) == t


region_ids = st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True)
# names hold no control characters (category Cc: ``protocol.text``), anything else TOML escapes
texts = st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=20)
coords = st.one_of(st.none(), st.floats(-90, 90, allow_nan=False))


@st.composite
def topologies(draw: st.DrawFn) -> Topology:
    ids = draw(st.lists(region_ids, min_size=1, max_size=5, unique=True))
    regions = tuple(
        Region(
            i,
            draw(texts),
            draw(st.sampled_from(["", "SG", "DE", "EU"])),
            draw(coords),
            draw(st.one_of(st.none(), st.floats(-180, 180, allow_nan=False))),
            draw(st.booleans()),
        )
        for i in ids
    )
    odd_models = st.text(
        st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1, max_size=20
    )
    models = draw(
        st.lists(
            st.one_of(st.sampled_from(["m1", "m2", "org/m3"]), odd_models), unique=True, max_size=3
        )
    )
    gateway = draw(st.sampled_from(ids))
    deployments = []
    n = 0
    for m in models:
        local_used = False
        for region in draw(st.lists(st.sampled_from(ids), unique=True, max_size=len(ids))):
            replicas = []
            for _ in range(draw(st.integers(1, 3))):
                n += 1
                if region == gateway and not local_used and draw(st.booleans()):
                    local_used = True
                    replicas.append(Replica(f"rep-{n}", "local"))
                else:
                    replicas.append(
                        Replica(
                            f"rep-{n}",
                            "upstream",
                            f"http://127.0.0.1:{9000 + n}/v1",
                            draw(st.one_of(st.none(), st.just("up-model"), odd_models)),
                            draw(st.one_of(st.none(), st.just('http://h/health?q="\\x"'))),
                            draw(st.one_of(st.none(), st.integers(1, 64))),
                        )
                    )
            deployments.append(Deployment(m, region, tuple(replicas)))
    pairs = draw(st.lists(st.tuples(st.sampled_from(ids), st.sampled_from(ids)), max_size=4))
    latency = {(min(a, b), max(a, b)): draw(st.floats(0, 1000, allow_nan=False)) for a, b in pairs}
    return Topology(regions, tuple(deployments), gateway, latency)


@settings(max_examples=150, deadline=None)
@given(topologies())
def test_dumps_then_loads_gives_the_same_topology(t: Topology) -> None:
    assert topo.loads(topo.dumps(t)) == t


ODD = 'say "hi" \\ it\'s \u00e9 \U0001f600 \u2028 [x] = { y } # z'
CONTROLS = "\x00\x01\x1f\x7f\t\r\n"  # names refuse them (``protocol.text``); URLs keep them


def test_odd_strings_survive_a_round_trip(tmp_path: Path) -> None:
    """Quotes, backslashes and unicode in every free-text field, control characters in the
    URLs (a name refuses them)."""
    t = Topology(
        (Region("sg", ODD, "SG", -0.0, 180.0), Region("eu", "", "", None, None, False)),
        (
            Deployment(
                ODD,
                "sg",
                (
                    Replica(ODD[:1], "local"),
                    Replica(
                        "u",
                        "upstream",
                        "http://h/v1?q=" + ODD + CONTROLS,
                        ODD,
                        "https://h/" + CONTROLS + ODD,
                        1,
                    ),
                ),
            ),
        ),
        "sg",
        {("eu", "sg"): 0.0},
    )
    text = topo.dumps(t)
    assert text.startswith("# modelgrid topology") and topo.loads(text) == t
    topo.save(t, tmp_path / "t.toml")
    assert topo.load(tmp_path / "t.toml") == t
    default = topo.default_topology(["org/m-1.5b", "qwen2.5:0.5b@q4"])
    assert topo.loads(topo.dumps(default)) == default


def test_the_file_and_the_admin_api_share_one_schema() -> None:
    """A deployment the admin API takes is one the file takes, and the reverse."""
    from modelgrid.protocol.topology import DeploymentSpec, RegionCreate

    body = DeploymentSpec.model_validate(
        {"model": "m", "region": "sg", "replicas": [{"base_url": "http://h/v1"}]}
    )
    region = RegionCreate.model_validate({"id": "sg", "jurisdiction": "sg", "latency_ms": {}})
    t = Topology((topo.region_of(region),), gateway_region="sg").with_deployment(
        topo.deployment_of(body)
    )
    assert t.deployment("m", "sg") == Deployment(
        "m", "sg", (Replica("sg/m/0", "upstream", "http://h/v1"),)
    )
    assert topo.loads(topo.dumps(t)) == t
    with pytest.raises(ValueError, match="needs an http"):  # the same rule in both
        DeploymentSpec.model_validate({"model": "m", "region": "sg", "replicas": [{}]})


def test_a_local_replica_outside_the_gateways_region_is_refused() -> None:
    """Residency: the gateway's own engine runs in ``gateway_region``; a deployment labelled
    with another region must not hold it (requests would run elsewhere than they say)."""
    text = """
gateway_region = "ap-southeast-1"
[[regions]]
id = "ap-southeast-1"
jurisdiction = "SG"
[[regions]]
id = "eu-west-2"
jurisdiction = "GB"
[[deployments]]
model = "m"
region = "eu-west-2"
[[deployments.replicas]]
kind = "local"
"""
    with pytest.raises(TopologyError, match="a local replica runs in this gateway's region"):
        topo.loads(text)
