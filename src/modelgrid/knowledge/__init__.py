"""Knowledge bases below the data plane: text extraction, chunking, fusion of rankings
(pure) and the vector and full-text index stores (SQLite: sqlite-vec and FTS5)."""

from modelgrid.knowledge.chunking import Chunk, ChunkPlan, pack_units, split_units
from modelgrid.knowledge.extract import FORMATS, Section, detect_format, extract
from modelgrid.knowledge.fusion import DEFAULT, RRF_K, Fusion, Hit, reciprocal_rank_fusion

__all__ = [
    "DEFAULT",
    "FORMATS",
    "RRF_K",
    "Chunk",
    "ChunkPlan",
    "Fusion",
    "Hit",
    "Section",
    "detect_format",
    "extract",
    "pack_units",
    "reciprocal_rank_fusion",
    "split_units",
]
