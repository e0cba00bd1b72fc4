parts = {'O', 'K'};
disp([parts{:}]);
