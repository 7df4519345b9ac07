"""The REST API: the FastAPI app, its routers, schemas, security and the alert hub."""
