from swapper.cli import console

console()
