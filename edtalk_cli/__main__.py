from edtalk_cli.cli import main

main()
