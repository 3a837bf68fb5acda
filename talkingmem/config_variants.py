"""The `BASE[,ABLATION]` variant strings of the configs (`configs/memface_a2e.py:demo,no_memory`)."""
from __future__ import annotations

from typing import Mapping, Sequence

from data_pipelines.user_errors import UserInputError


def parse_variant(arg: str | None, bases: Sequence[str], ablations: Mapping[str, object],
                  default: str = "paper") -> tuple[str, str | None]:
  """(base, ablation or None) from 'base', 'base,ablation', 'base+ablation' or a bare 'ablation'."""
  parts = [p for p in (arg or default).replace("+", ",").split(",") if p]
  if parts and parts[0] in ablations:
    parts.insert(0, default)
  base, rest = parts[0], parts[1:]
  if base not in bases or any(a not in ablations for a in rest) or len(rest) > 1:
    example = f"{bases[min(1, len(bases) - 1)]},{next(iter(ablations))}" if ablations else bases[0]
    raise UserInputError(f"unknown variant {arg!r}; choose a base of {tuple(bases)}, optionally followed "
                     f"by one of {tuple(ablations)} (e.g. '{example}')")
  return base, (rest[0] if rest else None)
