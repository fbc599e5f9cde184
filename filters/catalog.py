"""Recipe stage names of the filters package, as lazy "module:Class" strings."""

STAGES: dict[str, str] = {
    "gopher_quality": "gristmill.filters.gopher_quality:GopherQuality",
    "gopher_repetition": "gristmill.filters.gopher_repetition:GopherRepetition",
    "c4_quality": "gristmill.filters.c4:C4Quality",
    "fineweb_quality": "gristmill.filters.fineweb:FineWebQuality",
    "language_id": "gristmill.filters.language_id:LanguageId",
    "quality_classifier": "gristmill.filters.quality_classifier:QualityClassifier",
    "datatrove_filter": "gristmill.filters.datatrove_adapter:DatatroveFilter",
}
