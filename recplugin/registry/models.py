"""Model registry: one SQLAlchemy table of model versions; SQLite by default, any SQLAlchemy URL works."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import JSON, DateTime, Float, Integer, String, Text, create_engine, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class Base(DeclarativeBase):
    """Declarative base of the registry tables."""


class ModelVersionRow(Base):
    """A trained model version and where its artifact and item index live."""

    __tablename__ = "recplugin_model_versions"

    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    config: Mapped[dict] = mapped_column(JSON)
    metrics: Mapped[dict] = mapped_column(JSON)
    artifact_uri: Mapped[str] = mapped_column(Text)
    collection: Mapped[str | None] = mapped_column(String(255), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="trained")


class ServingChangeRow(Base):
    """Which version started serving when: `recplugin rollback` goes back along it."""

    __tablename__ = "recplugin_serving_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RolloutRow(Base):
    """The candidate version served beside the current one, and the share of users (in %) who get it; one row."""

    __tablename__ = "recplugin_rollout"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    share: Mapped[float] = mapped_column(Float, default=0.0)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LockRow(Base):
    """A named lock held until `expires_at` (a holder that died frees it then)."""

    __tablename__ = "recplugin_locks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class Rollout:
    """A candidate version and the percentage of users (by a stable hash of their id) who are answered by it."""

    version: str
    share: float


@dataclass(frozen=True)
class ModelVersion:
    """A registry row as plain data."""

    version: str
    created_at: datetime
    config: dict
    metrics: dict
    artifact_uri: str
    collection: str | None
    status: str


class UntrustedArtifact(ValueError):
    """A registry row whose artifact path does not lie under the configured artifact root."""


def confined_artifact(root: Path, artifact_uri: str) -> Path:
    """The artifact directory, resolved (symlinks followed), if it lies under `root`; UntrustedArtifact otherwise."""
    path, base = Path(artifact_uri).resolve(), root.resolve()
    if not path.is_relative_to(base):
        raise UntrustedArtifact(f"artifact {artifact_uri!r} is not under the artifact root {str(base)!r} "
                                "(config `artifact_root`); register it with `recplugin register`, which copies it there")
    return path


class UnknownVersion(LookupError):
    """No such model version in the registry."""


class ModelRegistry:
    """Register versions, attach their Milvus collection, mark which one is served."""

    def __init__(self, url: str):
        bounded = {"connect_timeout": 5} if url.startswith("postgresql") else {"timeout": 5}  # seconds: never hang on it
        self.engine = create_engine(url, future=True, pool_pre_ping=True, connect_args=bounded)
        Base.metadata.create_all(self.engine)

    @staticmethod
    def _plain(row: ModelVersionRow) -> ModelVersion:
        return ModelVersion(row.version, row.created_at, row.config, row.metrics, row.artifact_uri, row.collection, row.status)

    def register(self, version: str, config: dict, metrics: dict, artifact_uri: str) -> ModelVersion:
        """Add a trained version (metrics are stored as JSON-safe data)."""
        with Session(self.engine) as session, session.begin():
            row = ModelVersionRow(version=version, created_at=datetime.now(timezone.utc), config=config,
                                  metrics=json.loads(json.dumps(metrics)), artifact_uri=artifact_uri, status="trained")
            session.add(row)
            session.flush()
            return self._plain(row)

    def get(self, version: str) -> ModelVersion:
        """One version, or UnknownVersion."""
        with Session(self.engine) as session:
            row = session.get(ModelVersionRow, version)
            if row is None:
                raise UnknownVersion(f"model version {version!r} is not in the registry")
            return self._plain(row)

    def by_collection(self, collection: str) -> ModelVersion:
        """The version whose items are indexed in `collection`."""
        with Session(self.engine) as session:
            row = session.scalars(select(ModelVersionRow).where(ModelVersionRow.collection == collection)).first()
            if row is None:
                raise UnknownVersion(f"no model version is indexed in collection {collection!r}")
            return self._plain(row)

    def latest(self, status: str | None = None) -> ModelVersion:
        """The newest version (optionally with a given status)."""
        with Session(self.engine) as session:
            query = select(ModelVersionRow).order_by(ModelVersionRow.created_at.desc())
            if status:
                query = query.where(ModelVersionRow.status == status)
            row = session.scalars(query).first()
            if row is None:
                raise UnknownVersion("the registry has no model versions" + (f" with status {status!r}" if status else ""))
            return self._plain(row)

    def list(self) -> list[ModelVersion]:
        """All versions, newest first."""
        with Session(self.engine) as session:
            rows = session.scalars(select(ModelVersionRow).order_by(ModelVersionRow.created_at.desc())).all()
            return [self._plain(r) for r in rows]

    def mark_indexed(self, version: str, collection: str) -> None:
        """Record the version's complete Milvus collection."""
        self._update(version, collection=collection, status="indexed")

    def mark_serving(self, version: str) -> None:
        """Make `version` the served one; the previously served version goes back to 'indexed'."""
        with Session(self.engine) as session, session.begin():
            for row in session.scalars(select(ModelVersionRow).where(ModelVersionRow.status == "serving")):
                row.status = "indexed"
            target = session.get(ModelVersionRow, version)
            if target is None:
                raise UnknownVersion(f"model version {version!r} is not in the registry")
            target.status = "serving"
            session.add(ServingChangeRow(version=version, at=datetime.now(timezone.utc)))

    def serving_history(self) -> list[str]:
        """The versions that started serving, newest first (a version appears once per time it started)."""
        with Session(self.engine) as session:
            query = select(ServingChangeRow.version).order_by(ServingChangeRow.id.desc())
            return list(session.scalars(query).all())

    def set_rollout(self, version: str | None, share: float = 0.0) -> None:
        """Serve `version` to `share` % of users beside the serving version (None or a share of 0: no rollout)."""
        if version is not None:
            self.get(version)
        with Session(self.engine) as session, session.begin():
            row = session.get(RolloutRow, 0) or RolloutRow(id=0)
            row.version, row.share = (version, float(share)) if version and share > 0 else (None, 0.0)
            row.at = datetime.now(timezone.utc)
            session.merge(row)

    def rollout(self) -> Rollout | None:
        """The rollout in force, if any."""
        with Session(self.engine) as session:
            row = session.get(RolloutRow, 0)
            return Rollout(row.version, row.share) if row is not None and row.version else None

    def try_lock(self, name: str, holder: str, ttl_s: float) -> str | None:
        """Take the named lock for `ttl_s` (an expired one is taken over); None when taken, else who holds it."""
        now = datetime.now(timezone.utc)
        expires = now + timedelta(seconds=ttl_s)
        try:
            with Session(self.engine) as session, session.begin():
                session.add(LockRow(name=name, holder=holder, expires_at=expires))
            return None
        except IntegrityError:
            pass
        with Session(self.engine) as session, session.begin():  # one atomic UPDATE: two takers of a stale lock, one wins
            taken = session.execute(update(LockRow).where(LockRow.name == name, LockRow.expires_at < now)
                                    .values(holder=holder, expires_at=expires)).rowcount
            row = session.get(LockRow, name)
            return None if taken else f"{row.holder} until {row.expires_at:%Y-%m-%d %H:%M:%S}"

    def unlock(self, name: str, holder: str) -> None:
        """Release the named lock if `holder` still holds it."""
        with Session(self.engine) as session, session.begin():
            session.execute(delete(LockRow).where(LockRow.name == name, LockRow.holder == holder))

    def forget_collections(self, names: list[str]) -> None:
        """Versions whose collection was dropped go back to 'trained' (index them again to serve them)."""
        with Session(self.engine) as session, session.begin():
            for row in session.scalars(select(ModelVersionRow).where(ModelVersionRow.collection.in_(names))):
                row.collection, row.status = None, "trained"

    def _update(self, version: str, **values: object) -> None:
        with Session(self.engine) as session, session.begin():
            row = session.get(ModelVersionRow, version)
            if row is None:
                raise UnknownVersion(f"model version {version!r} is not in the registry")
            for key, value in values.items():
                setattr(row, key, value)
