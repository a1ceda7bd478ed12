"""The registry's HTTP side: the FastAPI app, its dependencies, errors, routes and the dashboard's static files."""
