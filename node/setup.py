"""`vouchnet init`: a new data directory with the org key, the API token and a commented config.toml."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vouching import did_key

from .config import CONFIG_FILE, ConfigError, load_config, parse_api_bind, render_template
from .keys import KeyFileError, create_org_key, create_token

@dataclass(frozen=True)
class Initialised:
    data_dir: Path
    did: str


def init_data_dir(
    data_dir: Path,
    *,
    name: str = "vouchnet node",
    network: str,
    listen: tuple[str, ...],
    api: str,
    bootstrap: tuple[str, ...] = (),
    roots: tuple[str, ...] = (),
) -> Initialised:
    """Create the data directory's key, token and config; refuse to overwrite any of them."""
    parse_api_bind(api)
    text = render_template(name=name, network=network, listen=listen, api=api, bootstrap=bootstrap, roots=roots)
    for existing in (data_dir / "org.key", data_dir / "api.token", data_dir / CONFIG_FILE):
        if existing.exists():
            raise KeyFileError(f"{existing}: already exists; {data_dir} is already a node's data directory")
    made = not data_dir.exists()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    config_path = data_dir / CONFIG_FILE
    # Not writable by group or others whatever the umask (002 is common): `vouchnet run` refuses that (strict_modes).
    with open(os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), "w", encoding="utf-8") as file:
        file.write(text)
    try:
        load_config(data_dir)  # what we wrote must load: catches a bad --listen, --root or --network now
    except ConfigError:
        config_path.unlink()
        if made:  # so that the same command, corrected, runs as if this one never had
            data_dir.rmdir()
        raise
    key = create_org_key(data_dir / "org.key")
    create_token(data_dir / "api.token")
    return Initialised(data_dir, did_key(bytes(key.verify_key)))
