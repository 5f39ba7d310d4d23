from dgd_operator.cli import main

raise SystemExit(main())
