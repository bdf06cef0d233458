"""team-placement: a vnode placement policy written in Python (componentize-py).

Platform teams share one virtual node; this policy gives each team its own rules:

* which team a pod belongs to: its `team` label (configurable), else its namespace's team
  from `namespaceTeams`, else the namespace itself;
* where it may run: the team's `zones` (default: every zone of the node), spread by the
  host's per-zone container-group counts, zones that recently ran out of stock last;
* how it is bought: `spot` = `never`, `allowed` (when the pod asks for it) or `preferred`;
* what it may ask for: per-pod CPU/memory ceilings and GPUs, refused with a reason that
  names the rule, so the pod's event tells its owner what to change;
* the ECI annotations users already know (`k8s.aliyun.com/eci-vswitch`, `eci-use-specs`,
  `eci-spot-strategy`, `eci-spot-price-limit`, `eci-spot-duration`,
  `eci-schedule-strategy`) are honoured inside the team's rules.

The configuration is JSON (see README.md); the empty string means the defaults. Every
decision runs in a fresh instance, so the configuration is parsed again from
`context.config` on each call (it is small; this costs microseconds).
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.exports import placement
from wit_world.imports import host, types

NAME = "team-placement"
VERSION = "1.0.0"

ANN_VSWITCH = "k8s.aliyun.com/eci-vswitch"
ANN_USE_SPECS = "k8s.aliyun.com/eci-use-specs"
ANN_SPOT_STRATEGY = "k8s.aliyun.com/eci-spot-strategy"
ANN_SPOT_PRICE_LIMIT = "k8s.aliyun.com/eci-spot-price-limit"
ANN_SPOT_DURATION = "k8s.aliyun.com/eci-spot-duration"
ANN_SCHEDULE_STRATEGY = "k8s.aliyun.com/eci-schedule-strategy"
# A pod declares it tolerates interruption (label or annotation, "true"/"false").
INTERRUPTIBLE = "vnode.io/interruptible"
# ECI tries at most this many attempts usefully; the host refuses more than 64.
MAX_ATTEMPTS = 16

SPOT_MODES = ("never", "allowed", "preferred")
TEAM_KEYS = {
    "zones",
    "spot",
    "onDemandFallback",
    "maxCpuMillis",
    "maxMemoryMib",
    "allowGpu",
    "refuse",
}
CONFIG_KEYS = {
    "teamLabel",
    "namespaceTeams",
    "requireTeamLabel",
    "exemptNamespaces",
    "avoidStockoutSeconds",
    "teams",
}


class ConfigError(Exception):
    pass


class Refusal(Exception):
    """A rule says no: the message becomes the pod's event and status message."""


def _expect(cond, message):
    if not cond:
        raise ConfigError(message)


def _team_settings(name, raw):
    _expect(isinstance(raw, dict), f"teams.{name} must be an object")
    unknown = set(raw) - TEAM_KEYS
    _expect(not unknown, f"teams.{name}: unknown key(s) {sorted(unknown)}")
    zones = raw.get("zones")
    if zones is not None:
        _expect(
            isinstance(zones, list) and zones and all(isinstance(z, str) and z for z in zones),
            f"teams.{name}.zones must be a non-empty list of zone IDs",
        )
    spot = raw.get("spot")
    if spot is not None:
        _expect(spot in SPOT_MODES, f"teams.{name}.spot must be one of {list(SPOT_MODES)}")
    for key in ("maxCpuMillis", "maxMemoryMib"):
        value = raw.get(key)
        if value is not None:
            _expect(
                isinstance(value, int) and not isinstance(value, bool) and value > 0,
                f"teams.{name}.{key} must be a positive integer",
            )
    for key in ("onDemandFallback", "allowGpu"):
        if key in raw:
            _expect(isinstance(raw[key], bool), f"teams.{name}.{key} must be true or false")
    if "refuse" in raw:
        _expect(
            isinstance(raw["refuse"], str) and raw["refuse"].strip(),
            f"teams.{name}.refuse must be a non-empty reason",
        )
    return raw


def parse_config(text):
    """The validated configuration as a dict with every default filled in."""
    config = {
        "teamLabel": "team",
        "namespaceTeams": {},
        "requireTeamLabel": False,
        "exemptNamespaces": ["kube-system"],
        "avoidStockoutSeconds": 300,
        "teams": {},
    }
    if not text.strip():
        return config
    try:
        raw = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"configuration is not JSON: {e}")
    _expect(isinstance(raw, dict), "configuration must be a JSON object")
    unknown = set(raw) - CONFIG_KEYS
    _expect(not unknown, f"unknown configuration key(s) {sorted(unknown)}")
    config.update(raw)
    _expect(
        isinstance(config["teamLabel"], str) and config["teamLabel"],
        "teamLabel must be a label key",
    )
    ns_teams = config["namespaceTeams"]
    _expect(
        isinstance(ns_teams, dict) and all(isinstance(v, str) and v for v in ns_teams.values()),
        "namespaceTeams must map namespaces to team names",
    )
    _expect(isinstance(config["requireTeamLabel"], bool), "requireTeamLabel must be true or false")
    exempt = config["exemptNamespaces"]
    _expect(
        isinstance(exempt, list) and all(isinstance(n, str) for n in exempt),
        "exemptNamespaces must be a list of namespaces",
    )
    avoid = config["avoidStockoutSeconds"]
    _expect(
        isinstance(avoid, int) and not isinstance(avoid, bool) and avoid >= 0,
        "avoidStockoutSeconds must be a non-negative integer",
    )
    teams = config["teams"]
    _expect(isinstance(teams, dict), "teams must map team names (or \"*\") to settings")
    for name, settings in teams.items():
        _team_settings(name, settings)
    return config


def lookup(pairs, key):
    for kv in pairs:
        if kv.key == key:
            return kv.value
    return None


def flag(meta, key):
    value = lookup(meta.annotations, key)
    if value is None:
        value = lookup(meta.labels, key)
    if value is None:
        return None
    value = value.strip()
    if value in ("true", "false"):
        return value == "true"
    raise Refusal(f"{key}: {value!r} must be true or false")


def pod_requests(pod):
    """Effective (cpu millicores, memory MiB, gpus): the sum over containers, or the largest
    init container if that is bigger (they run one at a time, before the others)."""

    def one(c):
        r = c.resources
        cpu = r.requests.cpu_millis if r.requests.cpu_millis is not None else r.limits.cpu_millis
        mem = (
            r.requests.memory_bytes
            if r.requests.memory_bytes is not None
            else r.limits.memory_bytes
        )
        gpu = r.limits.gpu if r.limits.gpu is not None else r.requests.gpu
        return (cpu or 0, (mem or 0) // (1 << 20), gpu or 0)

    sums = [sum(v) for v in zip(*(one(c) for c in pod.containers))] or [0, 0, 0]
    for init in pod.init_containers:
        sums = [max(a, b) for a, b in zip(sums, one(init))]
    return tuple(sums)


def parse_spec(entry):
    entry = entry.strip()
    if entry.startswith("ecs."):
        return entry
    bad = Refusal(f"{ANN_USE_SPECS}: {entry!r} is neither `<vcpu>-<mem>Gi` nor `ecs.<type>`")
    cpu, sep, mem = entry.partition("-")
    if not sep or not (mem.endswith("Gi") or mem.endswith("G")):
        raise bad
    try:
        vcpu = float(cpu)
        gib = float(mem.rstrip("i").rstrip("G"))
    except ValueError:
        raise bad
    if not (0 < vcpu <= 256 and 0 < gib <= 2048):
        raise bad
    return types.InstanceSpec(cpu_millis=round(vcpu * 1000), memory_mib=round(gib * 1024))


def sizings(meta):
    """`eci-use-specs` in the user's order (ECS types grouped at the first one's place), or
    automatic sizing."""
    value = lookup(meta.annotations, ANN_USE_SPECS)
    if value is None:
        return [types.Sizing_Auto()]
    out, ecs = [], None
    for entry in filter(None, (e.strip() for e in value.split(","))):
        spec = parse_spec(entry)
        if isinstance(spec, str):
            if ecs is None:
                ecs = types.Sizing_InstanceTypes([])
                out.append(ecs)
            ecs.value.append(spec)
        else:
            out.append(types.Sizing_Spec(spec))
    if not out:
        raise Refusal(f"{ANN_USE_SPECS} is set but lists no spec")
    return out


def pod_spot(meta):
    """The spot strategy the pod asks for with the ECI annotations, or None."""
    name = lookup(meta.annotations, ANN_SPOT_STRATEGY)
    if name is None:
        return None
    name = name.strip()
    if name == "NoSpot":
        return types.SpotStrategy_OnDemand()
    if name == "SpotAsPriceGo":
        return types.SpotStrategy_SpotAsPriceGo()
    if name == "SpotWithPriceLimit":
        limit = lookup(meta.annotations, ANN_SPOT_PRICE_LIMIT)
        try:
            price = float(limit) if limit is not None else None
        except ValueError:
            price = None
        if price is None or not price > 0 or price == float("inf"):
            raise Refusal(f"SpotWithPriceLimit needs a positive {ANN_SPOT_PRICE_LIMIT}")
        return types.SpotStrategy_SpotWithPriceLimit(round(price, 3))
    raise Refusal(
        f"{ANN_SPOT_STRATEGY}: unknown strategy {name!r} "
        "(NoSpot, SpotAsPriceGo or SpotWithPriceLimit)"
    )


def choose_spot(meta, mode):
    """(spot strategy, why) under the team's spot mode."""
    asked = pod_spot(meta)
    interruptible = flag(meta, INTERRUPTIBLE)
    on_demand = types.SpotStrategy_OnDemand()
    if isinstance(asked, types.SpotStrategy_OnDemand):
        return on_demand, "the pod asks for NoSpot"
    if mode == "never":
        if asked is not None or interruptible:
            return on_demand, "the team never runs on spot"
        return on_demand, "no spot asked"
    if asked is not None:
        return asked, "the pod asks for spot"
    if interruptible is False:
        return on_demand, "the pod is not interruptible"
    if interruptible or mode == "preferred":
        why = "the pod is interruptible" if interruptible else "the team prefers spot"
        return types.SpotStrategy_SpotAsPriceGo(), why
    return on_demand, "no spot asked"


def spot_duration(meta):
    value = lookup(meta.annotations, ANN_SPOT_DURATION)
    if value is None:
        return None
    if value.strip() in ("0", "1"):
        return int(value)
    raise Refusal(f"{ANN_SPOT_DURATION}: {value!r} must be 0 or 1 (hours)")


def team_of(pod, config):
    meta = pod.meta
    label = lookup(meta.labels, config["teamLabel"])
    if label:
        return label
    if config["requireTeamLabel"] and meta.namespace not in config["exemptNamespaces"]:
        raise Refusal(
            f"pods on this node must carry the label {config['teamLabel']!r} "
            "(it decides zones, spot and cost allocation)"
        )
    return config["namespaceTeams"].get(meta.namespace, meta.namespace)


def settings_of(team, config):
    merged = {
        "zones": None,
        "spot": "allowed",
        "onDemandFallback": True,
        "maxCpuMillis": None,
        "maxMemoryMib": None,
        "allowGpu": True,
        "refuse": None,
    }
    merged.update(config["teams"].get("*", {}))
    merged.update(config["teams"].get(team, {}))
    return merged


def zones_in_order(context, allowed, avoid_seconds):
    """The node's zones the team may use: recently stocked-out zones last, then fewest
    container groups first, ties in configuration order (deterministic)."""
    usage = {u.zone_id: u.container_groups for u in context.usage}
    stocked_out = {s.zone_id for s in context.recent_stockouts if s.seconds_ago < avoid_seconds}
    zones = [z for z in context.zones if allowed is None or z.zone_id in allowed]
    order = {z.zone_id: i for i, z in enumerate(context.zones)}
    zones.sort(key=lambda z: (z.zone_id in stocked_out, usage.get(z.zone_id, 0), order[z.zone_id]))
    return zones, usage


def decide(pod, context):
    config = parse_config(context.config)
    meta = pod.meta
    team = team_of(pod, config)
    rules = settings_of(team, config)
    if rules["refuse"]:
        raise Refusal(f"team {team}: {rules['refuse']}")

    cpu, mem, gpu = pod_requests(pod)
    if rules["maxCpuMillis"] is not None and cpu > rules["maxCpuMillis"]:
        raise Refusal(
            f"team {team}: the pod asks for {cpu}m CPU, "
            f"more than the team's per-pod ceiling of {rules['maxCpuMillis']}m"
        )
    if rules["maxMemoryMib"] is not None and mem > rules["maxMemoryMib"]:
        raise Refusal(
            f"team {team}: the pod asks for {mem} MiB of memory, "
            f"more than the team's per-pod ceiling of {rules['maxMemoryMib']} MiB"
        )
    if gpu and not rules["allowGpu"]:
        raise Refusal(f"team {team}: GPU pods are not allowed for this team ({gpu} GPU asked)")

    allowed = set(rules["zones"]) if rules["zones"] is not None else None
    zones, usage = zones_in_order(context, allowed, config["avoidStockoutSeconds"])
    spot, spot_why = choose_spot(meta, rules["spot"])
    duration = spot_duration(meta)
    sizes = sizings(meta)
    tags = [types.KeyValue(key="team", value=team)]

    def attempt(zone_id, vswitches, strategy, sizing, how):
        return types.Attempt(
            zone_id=zone_id,
            vswitch_ids=vswitches,
            schedule_strategy=strategy,
            sizing=sizing,
            spot=how,
            spot_duration_hours=None if isinstance(how, types.SpotStrategy_OnDemand) else duration,
            compute_categories=[],
            extra_tags=tags,
        )

    buys = [spot]
    if not isinstance(spot, types.SpotStrategy_OnDemand) and rules["onDemandFallback"]:
        buys.append(types.SpotStrategy_OnDemand())

    pinned = lookup(meta.annotations, ANN_VSWITCH)
    if pinned is not None:
        vswitches = [v.strip() for v in pinned.split(",") if v.strip()]
        if not vswitches:
            raise Refusal(f"{ANN_VSWITCH} is set but lists no vSwitch")
        zone_of = {z.vswitch_id: z.zone_id for z in context.zones}
        if allowed is not None:
            for v in vswitches:
                if zone_of.get(v) not in allowed:
                    where = zone_of.get(v, "a zone this node does not know")
                    raise Refusal(
                        f"team {team}: vSwitch {v} is in {where}; "
                        f"the team may only use {', '.join(sorted(allowed))}"
                    )
        strategy = lookup(meta.annotations, ANN_SCHEDULE_STRATEGY)
        if strategy is not None and strategy.strip() not in ("VSwitchOrdered", "VSwitchRandom"):
            raise Refusal(f"{ANN_SCHEDULE_STRATEGY}: {strategy!r} must be VSwitchOrdered or VSwitchRandom")
        attempts = [
            attempt(None, vswitches, strategy and strategy.strip(), s, how)
            for how in buys
            for s in sizes
        ]
        where = f"pinned vSwitches {','.join(vswitches)}"
    elif zones:
        attempts = [
            attempt(z.zone_id, [z.vswitch_id], None, s, how)
            for how in buys
            for z in zones
            for s in sizes
        ]
        first = zones[0].zone_id
        where = f"{first} ({usage.get(first, 0)} groups there) first of {len(zones)} zone(s)"
    elif allowed is not None:
        raise Refusal(
            f"team {team}: may only run in {', '.join(sorted(allowed))}, "
            "and this node has none of those zones"
        )
    else:
        # A node without configured zones: let ECI choose among its default vSwitches.
        attempts = [attempt(None, [], None, s, how) for how in buys for s in sizes]
        where = "ECI chooses the zone"

    buy = "spot" if not isinstance(spot, types.SpotStrategy_OnDemand) else "on-demand"
    reason = f"team {team}: {where}; {buy} ({spot_why})"
    return placement.Decision_Accept(
        placement.Accepted(attempts=attempts[:MAX_ATTEMPTS], reason=reason)
    )


class Plugin(wit_world.exports.Plugin):
    def info(self):
        return types.PluginInfo(
            name=NAME,
            version=VERSION,
            description="Per-team zones, spot and size rules; spreads by zone usage (Python)",
        )

    def init(self, config):
        try:
            parse_config(config)
        except ConfigError as e:
            raise Err(str(e))


class Placement(wit_world.exports.Placement):
    def place(self, pod, context):
        try:
            return decide(pod, context)
        except Refusal as e:
            return placement.Decision_Refuse(str(e))
        except ConfigError as e:
            # init accepted this configuration, so this cannot happen; refuse rather than trap.
            host.log(host.LogLevel.ERROR, f"configuration: {e}")
            return placement.Decision_Refuse(f"{NAME}: configuration: {e}")
