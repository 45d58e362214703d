from reid.cli import main

raise SystemExit(main())
