"""The WSGI entry point for production servers: `gunicorn -k gthread 'app.wsgi:app'`."""
from app import create_app

app = create_app()
