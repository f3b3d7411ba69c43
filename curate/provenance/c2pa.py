"""C2PA content credentials: read a file's manifest store with `c2pa-python`, offline, and
turn it into evidence (validation state, claim generator, declared digital source types).

`c2pa-python` is optional (`curate[provenance]`) and imported only when a file carries a
manifest store.
"""

from __future__ import annotations

import io
import json
import os
import threading
from typing import Any

from curate.provenance.evidence import (
    CAPTURE_SOURCE_TYPES,
    SYNTHETIC_SOURCE_TYPES,
    Evidence,
    source_type_name,
    source_types_say,
)

_PEM_CERTIFICATE = "-----BEGIN CERTIFICATE-----"
_local = threading.local()


def load_trust_anchors(trust_anchors: str | os.PathLike | None) -> str | None:
    """PEM text of C2PA trust anchors given as PEM text or a PEM file; ValueError when the file
    cannot be read or holds no certificate."""
    if trust_anchors is None:
        return None
    text = os.fspath(trust_anchors)
    if _PEM_CERTIFICATE not in text:
        try:
            with open(text, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise ValueError(f"cannot read C2PA trust anchors {text!r}: {exc.strerror}") from None
        if _PEM_CERTIFICATE not in text:
            raise ValueError(
                f"C2PA trust anchors {os.fspath(trust_anchors)!r} hold no PEM certificate"
            )
    return text


def _context(trust_anchors: str | None):
    """A c2pa Context per thread (and per process: forked workers build their own): never
    fetches remote manifests or OCSP, so scoring stays offline and deterministic; trusts
    `trust_anchors` (PEM) when given."""
    import c2pa

    key = trust_anchors or ""
    cache = getattr(_local, "contexts", None)
    if cache is None or getattr(_local, "pid", None) != os.getpid():
        cache = _local.contexts = {}
        _local.pid = os.getpid()
    if key not in cache:
        settings: dict[str, Any] = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
        if trust_anchors:
            settings["trust"] = {"trust_anchors": trust_anchors}
        cache[key] = c2pa.Context.from_dict(settings)
    return cache[key]


def read_c2pa(
    data: bytes, trust_anchors: str | None = None, present: bool | None = None
) -> Evidence | None:
    """C2PA evidence from file bytes, or None when the file carries no manifest store.

    `present`: whether the caller's own scan of the file found a manifest store (None: look
    for one in the whole file)."""
    # Every embedded manifest store is a JUMBF box labelled "c2pa": skip the reader without it.
    if present is None:
        present = b"c2pa" in data
    if not present:
        return None
    try:
        import c2pa
    except ImportError:
        return Evidence(
            "c2pa",
            "C2PA data present but not checked (install curate[provenance] for c2pa-python)",
        )
    try:
        with c2pa.Reader(io.BytesIO(data), context=_context(trust_anchors)) as reader:
            store = json.loads(reader.json())
    except c2pa.C2paError as exc:
        if "ManifestNotFound" in type(exc).__name__ or "not found" in str(exc).lower():
            return None
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return _unreadable(msg)
    except Exception as exc:  # a parser bug must cost one row's C2PA check, not the run
        return _unreadable(f"{type(exc).__name__}: {exc}")
    return c2pa_evidence(store)


def _unreadable(msg: str) -> Evidence:
    return Evidence("c2pa", f"C2PA data present but unreadable ({msg})", detail={"error": msg})


def _walk(node: Any, found: dict[str, list]) -> None:
    """Collect digital source types and software agents anywhere in a manifest's assertions."""
    if isinstance(node, dict):
        for k, v in node.items():
            lk = k.lower()
            if lk.endswith("digitalsourcetype") and isinstance(v, str):
                found["source_types"].append(source_type_name(v))
            elif lk == "softwareagent":
                name = v.get("name") if isinstance(v, dict) else v
                if isinstance(name, str):
                    version = v.get("version") if isinstance(v, dict) else None
                    found["software_agents"].append(f"{name} {version}" if version else name)
            else:
                _walk(v, found)
    elif isinstance(node, list):
        for v in node:
            _walk(v, found)


def _claim_generator(manifest: dict) -> str | None:
    info = manifest.get("claim_generator_info")
    if isinstance(info, list) and info and isinstance(info[0], dict) and info[0].get("name"):
        version = info[0].get("version")
        return f"{info[0]['name']} {version}" if version else str(info[0]["name"])
    gen = manifest.get("claim_generator")
    return str(gen) if gen else None


def c2pa_evidence(store: dict) -> Evidence:
    """Evidence from a manifest store as `c2pa.Reader.json()` gives it.

    Strong only when the store validates and declares AI generation; a declaration found only
    in an ingredient's manifest (an edit of a generated image) still counts, and says so."""
    manifests = store.get("manifests") or {}
    active_label = store.get("active_manifest")
    active = manifests.get(active_label) or {}
    state = store.get("validation_state") or "Unknown"
    codes = [s.get("code") for s in store.get("validation_status") or [] if isinstance(s, dict)]
    per_manifest = {}
    all_types: list[str] = []
    for label, manifest in manifests.items():
        found: dict[str, list] = {"source_types": [], "software_agents": []}
        _walk(manifest.get("assertions") or [], found)
        all_types += found["source_types"]
        per_manifest[label] = {
            "active": label == active_label,
            "claim_generator": _claim_generator(manifest),
            "digital_source_types": sorted(set(found["source_types"])),
            "software_agents": sorted(set(found["software_agents"])),
            "signer": (manifest.get("signature_info") or {}).get("common_name"),
            "issuer": (manifest.get("signature_info") or {}).get("issuer"),
        }
    says = source_types_say(all_types)
    valid = state in ("Valid", "Trusted")
    generator = _claim_generator(active)
    agents = sorted({a for m in per_manifest.values() for a in m["software_agents"]})

    trust = ""
    if state == "Valid" and "signingCredential.untrusted" in codes:
        trust = ", signer not on the trust list"
    elif state == "Invalid":
        failed = [c for c in codes if c != "signingCredential.untrusted"]
        trust = f" ({', '.join(failed[:3])})" if failed else ""
    types = sorted(set(all_types))
    if says == "synthetic":
        declared = ", ".join(t for t in types if t in SYNTHETIC_SOURCE_TYPES)
        verdict = f"declares AI/synthetic generation ({declared})"
    elif says == "captured":
        verdict = f"declares capture ({', '.join(t for t in types if t in CAPTURE_SOURCE_TYPES)})"
    else:
        verdict = "no AI or capture source type declared"
    active_types = (per_manifest.get(active_label) or {}).get("digital_source_types") or []
    if says is not None and source_types_say(active_types) != says:
        verdict += " in an ingredient's manifest"  # e.g. an edit of a generated image
    summary = f"C2PA {state}{trust}: {verdict}"
    if agents:
        summary += f", by {', '.join(repr(a) for a in agents[:3])}"
    if generator:
        summary += f"; claim generator {generator!r}"
    return Evidence(
        "c2pa",
        summary,
        says=says,
        strong=valid and says == "synthetic",
        detail={
            "source": "c2pa",
            "validation_state": state,
            "validation_codes": codes,
            "active_manifest": active_label,
            "manifests": per_manifest,
        },
    )
