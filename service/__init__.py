"""HistoSynth REST API (FastAPI): ``create_app`` in :mod:`service.app`, CLI in :mod:`service.cli`.
"""
