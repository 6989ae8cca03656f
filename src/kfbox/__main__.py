from kfbox.cli.main import main

main()
