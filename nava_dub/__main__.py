from nava_dub.cli import main

main()
