"""The 13 nuScenes JSON tables: deterministic tokens, record builders and the writer."""

import hashlib
import json
import pathlib

import numpy as np
from pyquaternion import Quaternion

from data_prep.nuscenes_tables import NUSCENES_TABLES

CATEGORIES = {
    "vehicle.car": "Vehicle designed primarily for personal use.",
    "vehicle.truck": "Vehicles primarily designed to haul cargo.",
}
ATTRIBUTES = {
    "vehicle.moving": "Vehicle is moving.",
    "vehicle.stopped": "Vehicle, with a driver/rider in/on it, is currently stationary.",
    "vehicle.parked": "Vehicle is stationary (usually for longer duration) with no immediate "
    "intent to move.",
}
# nuScenes visibility tokens are the strings "1".."4".
VISIBILITIES = {"1": "v0-40", "2": "v40-60", "3": "v60-80", "4": "v80-100"}


def quaternion_wxyz(rotation_33: np.ndarray) -> list[float]:
    """nuScenes rotation: quaternion as [w, x, y, z]."""
    return [float(v) for v in Quaternion(matrix=rotation_33, atol=1e-6).elements]


class Tables:
    """Collects records; every token is an md5 of the seed and a record path, so the same
    seed always produces byte-identical tables."""

    def __init__(self, seed: int):
        self._seed = seed
        self.records: dict[str, list[dict]] = {name: [] for name in NUSCENES_TABLES}
        self._by_token: dict[tuple[str, str], dict] = {}
        self.category_tokens = {
            n: self.add("category", ("category", n), name=n, description=d)
            for n, d in CATEGORIES.items()
        }
        self.attribute_tokens = {
            n: self.add("attribute", ("attribute", n), name=n, description=d)
            for n, d in ATTRIBUTES.items()
        }
        for token, level in VISIBILITIES.items():
            self.add_record(
                "visibility", token, level=level, description=f"visibility of an instance: {level}"
            )

    def token(self, path: tuple) -> str:
        return hashlib.md5("/".join(map(str, (self._seed, *path))).encode()).hexdigest()

    def add(self, table: str, path: tuple, **fields) -> str:
        """Append a record to `table`; its token derives from `path`. Returns the token."""
        return self.add_record(table, self.token((table, *path)), **fields)

    def add_record(self, table: str, token: str, **fields) -> str:
        """Append a record with a given token (ego_pose shares its sample_data's token)."""
        if (table, token) in self._by_token:
            raise RuntimeError(f"duplicate token {token} in table {table!r}")
        self._by_token[table, token] = {"token": token, **fields}
        self.records[table].append(self._by_token[table, token])
        return token

    def has(self, table: str, token: str) -> bool:
        return (table, token) in self._by_token

    def merge(self, records: dict[str, list[dict]]) -> None:
        """Adds the records of another Tables with the same seed (a scene rendered in a worker
        process); records already here (fixed tables, sensors shared by scenes) are skipped."""
        for table in NUSCENES_TABLES:
            for record in records[table]:
                if not self.has(table, record["token"]):
                    fields = {k: v for k, v in record.items() if k != "token"}
                    self.add_record(table, record["token"], **fields)

    def link(self, table: str, tokens: list[str]) -> None:
        """Chain records in the given order via prev/next ("" at the ends, as nuScenes)."""
        for k, token in enumerate(tokens):
            record = self._by_token[table, token]
            record["prev"] = tokens[k - 1] if k > 0 else ""
            record["next"] = tokens[k + 1] if k + 1 < len(tokens) else ""

    def write(self, table_dir: pathlib.Path) -> None:
        table_dir.mkdir(parents=True, exist_ok=True)
        for name in NUSCENES_TABLES:
            with open(table_dir / f"{name}.json", "w") as f:
                json.dump(self.records[name], f, indent=0)
