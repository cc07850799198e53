"""The fixed taxonomy of body systems that every model is filed under."""

BODY_SYSTEMS: tuple[str, ...] = (
    "cardiovascular",
    "digestive",
    "endocrine",
    "integumentary",
    "lymphatic",
    "muscular",
    "nervous",
    "urinary",
    "reproductive",
    "respiratory",
    "skeletal",
)
