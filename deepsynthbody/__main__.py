from deepsynthbody.cli import main

main()
