from grayctl.cli import main

main()
