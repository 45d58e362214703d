"""The person re-ID web service: gallery, search, footfall (see docs/service.md).

app.create_app(settings) builds the FastAPI app; `reid serve` runs it.
"""
