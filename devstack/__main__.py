from devstack.cli import app

app()
