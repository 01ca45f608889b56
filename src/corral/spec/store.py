"""The store's part of the spec: ``store: embedded`` (an etcd voting member on every core
node) or ``store: {etcd: {endpoints}}`` (an external cluster), each with optional TLS."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from corral.spec.paths import AbsolutePath


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False
    )


DEFAULT_BUNDLE = "/etc/corral/ca"


class StoreTls(_Model):
    """TLS to etcd with client certificates, for the embedded store and an external etcd alike:
    either ``bundle`` (corral's CA from ``corral ca init``: each agent issues and rotates its
    own node certificate from it), or ``ca`` + ``cert`` + ``key`` (your own PKI; the files are
    the node's identity, at the same path on every node). ``tls: {}`` is the default bundle
    ``/etc/corral/ca``. Paths are absolute; that the files exist is checked where they are
    used (the agent, the CLI), naming this field."""

    bundle: AbsolutePath | None = None
    ca: AbsolutePath | None = None
    cert: AbsolutePath | None = None
    key: AbsolutePath | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_bundle(cls, data: Any) -> Any:
        if isinstance(data, dict) and not any(k in data for k in ("bundle", "ca", "cert", "key")):
            return {**data, "bundle": DEFAULT_BUNDLE}
        return data

    @model_validator(mode="after")
    def _one_source(self) -> StoreTls:
        files = [self.ca, self.cert, self.key]
        if self.bundle is not None and any(files):
            raise ValueError("give either 'bundle' or 'ca', 'cert' and 'key', not both")
        if any(files) and not all(files):
            missing = [n for n, v in zip(("ca", "cert", "key"), files, strict=True) if not v]
            raise ValueError(f"'ca', 'cert' and 'key' go together: {', '.join(missing)} missing")
        return self


class EmbeddedStore(_Model):
    client_port: int = Field(default=2379, ge=1, le=65535)
    peer_port: int = Field(default=2380, ge=1, le=65535)
    data_dir: str = "/var/lib/corral/etcd"
    tls: StoreTls | None = Field(
        default=None, description="TLS for the members' clients and peers (None: plain http)"
    )


class ExternalEtcd(_Model):
    endpoints: list[str] = Field(min_length=1)
    tls: StoreTls | None = Field(
        default=None, description="TLS to the cluster (needs https:// endpoints)"
    )

    @model_validator(mode="after")
    def _schemes(self) -> ExternalEtcd:
        https = [e.startswith("https://") for e in self.endpoints]
        if self.tls is not None and any(e.startswith("http://") for e in self.endpoints):
            raise ValueError("with 'tls', the endpoints are https:// (or host:port)")
        if self.tls is None and any(https):
            raise ValueError("https:// endpoints need 'tls' (bundle, or ca, cert and key)")
        return self


class Store(_Model):
    embedded: EmbeddedStore | None = None
    etcd: ExternalEtcd | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if data == "embedded":
            return {"embedded": {}}
        if isinstance(data, str):
            raise ValueError(f"store must be 'embedded' or a mapping with 'etcd:', not {data!r}")
        return data

    @model_validator(mode="after")
    def _one(self) -> Store:
        if (self.embedded is None) == (self.etcd is None):
            raise ValueError("store needs exactly one of 'embedded' or 'etcd'")
        return self
