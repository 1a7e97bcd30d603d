from lockgate.cli.main import run

run()
