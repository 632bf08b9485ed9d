from swapper.cli import main

raise SystemExit(main())
