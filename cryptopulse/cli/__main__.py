from cryptopulse.cli.main import app

app(prog_name="cryptopulse")
